package configs

import (
	"os"
	"path/filepath"
)

// Values of Audit.Output that are not files.
const (
	// AuditProcessLog keeps the audit lines in the process log.
	AuditProcessLog = ""
	// AuditStdout writes them to standard output.
	AuditStdout = "stdout"
	// AuditStderr writes them to standard error.
	AuditStderr = "stderr"
)

// validate checks audit.output: the process log, stdout, stderr, or an
// absolute path in an existing directory (the file itself is created when
// missing).
func (a *Audit) validate(p *problems) {
	const key = "audit.output"
	switch a.Output {
	case AuditProcessLog, AuditStdout, AuditStderr:
		return
	}
	if !filepath.IsAbs(a.Output) {
		p.addf(key, "%q is not stdout, stderr or an absolute file path: set it to e.g. /var/log/ldapgate/audit.log, or leave it empty for the process log", a.Output)
		return
	}
	if st, err := os.Stat(a.Output); err == nil && st.IsDir() {
		p.addf(key, "%s is a directory: name a file in it, e.g. %s", a.Output, filepath.Join(a.Output, "audit.log"))
		return
	}
	dir := filepath.Dir(a.Output)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		p.addf(key, "the directory %s does not exist: create it (writable by the user ldapgate runs as) or point the file elsewhere", dir)
	}
}
