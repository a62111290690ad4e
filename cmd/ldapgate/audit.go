package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/proxy"
)

// auditSink is the audit log's own output (audit.output): a JSON logger into
// stdout, stderr or a file that SIGHUP reopens. With audit.output empty it
// holds no logger and the audit lines stay in the process log.
type auditSink struct {
	log       *zap.Logger // nil: the process log's "audit" logger
	file      *reopenFile // nil unless the output is a file
	stop      chan struct{}
	done      chan struct{} // closed when the SIGHUP goroutine has ended
	closeOnce sync.Once
}

// openAudit opens the sink cfg names. Close it after the last bind.
func openAudit(cfg configs.Audit, log *zap.Logger) (*auditSink, error) {
	return openAuditTo(cfg, os.Stdout, os.Stderr, log)
}

// openAuditTo is openAudit with the process's standard output and error as
// arguments.
func openAuditTo(cfg configs.Audit, stdout, stderr io.Writer, log *zap.Logger) (*auditSink, error) {
	a := &auditSink{}
	var w zapcore.WriteSyncer
	switch cfg.Output {
	case configs.AuditProcessLog:
		return a, nil
	case configs.AuditStdout:
		w = zapcore.Lock(zapcore.AddSync(stdout))
	case configs.AuditStderr:
		w = zapcore.Lock(zapcore.AddSync(stderr))
	default:
		f, err := openReopenFile(cfg.Output)
		if err != nil {
			return nil, fmt.Errorf("audit.output: %w; make the directory writable by the user ldapgate runs as, or set audit.output to another file", err)
		}
		a.file, w = f, f
		a.stop, a.done = make(chan struct{}), make(chan struct{})
		// Registered before serving, so no SIGHUP is missed (or, with no
		// channel registered, kills the process).
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		go a.reopenOnHUP(hup, log)
	}
	// Debug level: every decision is written, whatever log.level says.
	core := zapcore.NewCore(zapcore.NewJSONEncoder(logEncoderConfig()), w, zapcore.DebugLevel)
	a.log = zap.New(core, zap.ErrorOutput(zapcore.Lock(zapcore.AddSync(stderr))))
	log.Info("audit log", zap.String("output", cfg.Output))
	return a, nil
}

// authOption sends the bind path's audit lines to the sink.
func (a *auditSink) authOption() proxy.AuthOption { return proxy.WithAuditLogger(a.log) }

// searchOption sends the audit lines of the proxy user's local-secret binds
// to the sink and tells observe (the metrics and /status) of each decision.
func (a *auditSink) searchOption(observe proxy.Observer) proxy.SearchOption {
	return proxy.WithSearchAudit(a.log, observe)
}

// reopenOnHUP reopens the file on every SIGHUP until close: logrotate moves
// the file away, then signals. The serve loop gets the same signal for its
// own reload (Go delivers it to every registered channel).
func (a *auditSink) reopenOnHUP(hup chan os.Signal, log *zap.Logger) {
	defer close(a.done)
	defer signal.Stop(hup)
	for {
		select {
		case <-a.stop:
			return
		case <-hup:
			if err := a.file.reopen(); err != nil {
				log.Error("reopen the audit log: still writing to the old file", zap.String("output", a.file.path), zap.Error(err))
			} else {
				log.Info("reopened the audit log", zap.String("output", a.file.path))
			}
		}
	}
}

// close flushes and closes the sink; later calls do nothing.
func (a *auditSink) close() {
	a.closeOnce.Do(func() {
		if a.log != nil {
			_ = a.log.Sync()
		}
		if a.file != nil {
			close(a.stop)
			<-a.done
			_ = a.file.Close()
		}
	})
}

// reopenFile is a file opened for appending that can be reopened under the
// same name, for log rotation. Safe for concurrent use.
type reopenFile struct {
	path string
	mu   sync.Mutex
	f    *os.File // nil after Close
}

func openReopenFile(path string) (*reopenFile, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &reopenFile{path: path, f: f}, nil
}

// openAppend opens path for appending, creating it mode 0600.
func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
}

// Write appends p, one whole audit line, to the current file.
func (r *reopenFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return 0, os.ErrClosed
	}
	return r.f.Write(p)
}

// Sync flushes the current file to disk.
func (r *reopenFile) Sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return os.ErrClosed
	}
	return r.f.Sync()
}

// reopen opens the path anew (creating it if it was moved away) and closes
// the previous file; on error the previous file stays in use.
func (r *reopenFile) reopen() error {
	f, err := openAppend(r.path)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		_ = f.Close()
		return os.ErrClosed
	}
	old := r.f
	r.f = f
	return old.Close()
}

// Close closes the current file.
func (r *reopenFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return os.ErrClosed
	}
	err := r.f.Close()
	r.f = nil
	return err
}
