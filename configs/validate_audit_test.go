package configs

import (
	"path/filepath"
	"testing"
)

func TestValidateAudit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name, output, wantErrContains string
	}{
		{name: "the process log (default)", output: ""},
		{name: "stdout", output: "stdout"},
		{name: "stderr", output: "stderr"},
		{name: "a new file in an existing directory", output: filepath.Join(dir, "audit.log")},
		{name: "a relative path is refused", output: "audit.log",
			wantErrContains: `config: audit.output: "audit.log" is not stdout, stderr or an absolute file path: set it to e.g. /var/log/ldapgate/audit.log`},
		{name: "a directory is refused", output: dir,
			wantErrContains: "config: audit.output: " + dir + " is a directory: name a file in it"},
		{name: "a file in a missing directory is refused", output: filepath.Join(dir, "missing", "audit.log"),
			wantErrContains: "config: audit.output: the directory " + filepath.Join(dir, "missing") + " does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := validConfig(t)
			c.Audit.Output = tt.output
			checkErr(t, c.Validate(), tt.wantErrContains)
		})
	}
}
