package main

import (
	"flag"
	"fmt"
	"io"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// logFlags are the log options every long-running command takes; set, they win
// over the configuration file's log section.
type logFlags struct {
	format string
	level  string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log-format", "", "log as `FORMAT`: json (default) or console")
	fs.StringVar(&l.level, "log-level", "", "log at `LEVEL`: debug, info (default), warn or error")
}

// newLogger builds the process logger writing to w. Empty format and level fall
// back to the configuration's, then to json and info.
func newLogger(w io.Writer, format, level string) (*zap.Logger, error) {
	log, _, err := newLeveledLogger(w, format, level)
	return log, err
}

// newLeveledLogger is newLogger that also returns the level, which serve's
// reload changes (log.level) while the logger runs.
func newLeveledLogger(w io.Writer, format, level string) (*zap.Logger, zap.AtomicLevel, error) {
	if format == "" {
		format = "json"
	}
	if level == "" {
		level = "info"
	}
	lvl, err := zap.ParseAtomicLevel(level)
	if err != nil {
		return nil, lvl, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", level)
	}
	ec := logEncoderConfig()
	var enc zapcore.Encoder
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(ec)
	case "console":
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		return nil, lvl, fmt.Errorf("--log-format: %q is not json or console", format)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), lvl)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(zapcore.AddSync(w)))), lvl, nil
}

// logEncoderConfig is the shape of every log line ldapgate writes: "ts" as
// ISO 8601, durations as strings ("1.5s").
func logEncoderConfig() zapcore.EncoderConfig {
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	ec.EncodeDuration = zapcore.StringDurationEncoder
	return ec
}
