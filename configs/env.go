package configs

import (
	"errors"
	"fmt"
	"strings"
)

// expand replaces each ${NAME} in s with the value of the environment variable
// NAME, looked up with getenv, and each $${ with a literal ${. Nothing else is
// special: "Pa$$word" and "$HOME" stay as written, which keeps passwords with
// dollar signs intact. It reports whether any variable was substituted. Errors
// never quote s, which may be a password.
func expand(s string, getenv func(string) (string, bool)) (string, bool, error) {
	if !strings.Contains(s, "${") {
		return s, false, nil
	}
	var b strings.Builder
	substituted := false
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), substituted, nil
		}
		if i > 0 && s[i-1] == '$' {
			b.WriteString(s[:i-1] + "${")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			return "", false, errors.New("unterminated ${: close it with }, or write $${ for a literal ${")
		}
		name := s[i+2 : i+2+end]
		if !isEnvName(name) {
			return "", false, errors.New("${...} must hold an environment variable name (letters, digits and _, not starting with a digit): write $${ for a literal ${")
		}
		v, ok := getenv(name)
		if !ok {
			return "", false, fmt.Errorf("environment variable %s is not set: set it in ldapgate's environment (e.g. systemd Environment= or EnvironmentFile=), or write $${ for a literal ${", name)
		}
		b.WriteString(v)
		substituted = true
		s = s[i+2+end+1:]
	}
}

// isEnvName reports whether name is a portable environment variable name.
func isEnvName(name string) bool {
	if name == "" || (name[0] >= '0' && name[0] <= '9') {
		return false
	}
	for _, r := range name {
		if r != '_' && (r < 'A' || r > 'Z') && (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}
