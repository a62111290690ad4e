package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxSecretFileBytes bounds what is read from a *_file secret: AD passwords are
// at most 256 characters, so anything near this is the wrong file.
const maxSecretFileBytes = 4096

// Load reads the configuration file at path and returns it filled, with
// defaults, and validated; see Parse for the rules. Load also warns (see
// Warnings) when the file holds a secret and group or others can read it.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileError("", 0, err) // an *fs.PathError names the file
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fileError("", 0, err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fileError(path, 0, err)
	}
	l := loader{source: path, mode: st.Mode(), getenv: os.LookupEnv}
	return l.load(data)
}

// Parse fills a Config from the YAML in data and validates it; source names
// the data in errors and warnings (usually the file name).
//
// It starts from Default() and sets only the keys present, so an absent key
// (or a key with no value) keeps its default. Unknown keys, keys set twice,
// values of the wrong type and more than one YAML document are errors.
// Durations are Go duration strings ("500ms", "5s", "10m"). In every value,
// ${NAME} is replaced by the environment variable NAME (unset is an error) and
// $${ by a literal ${; nothing else is special, so "Pa$$word" stays as written.
// Expansion happens after parsing, so an environment value cannot change the
// document's structure, and never in keys. bind_password_file is read into
// Upstream.BindPassword (trailing line breaks removed). Paths are used as
// written: a relative path is relative to the working directory.
//
// On failure Parse returns every problem it found, each an *Error naming the
// key and, where it is in the file, its line, joined with errors.Join. On
// success, Warnings lists what deserves a warning (e.g. a password file that
// group or others can read).
func Parse(data []byte, source string) (*Config, error) {
	l := loader{source: source, getenv: os.LookupEnv}
	return l.load(data)
}

// Warnings returns what Load or Parse found worth a warning but not an error,
// e.g. a password file that group or others can read, each worded like an
// error ("config: FILE:LINE: KEY: PROBLEM: what to do"). A Config built in code
// has none.
func (c *Config) Warnings() []string {
	return append([]string(nil), c.warnings...)
}

// loader holds what one Load or Parse needs besides the data.
type loader struct {
	// source names the data in errors.
	source string
	// mode is the configuration file's mode; 0 when the data is not a file.
	mode fs.FileMode
	// getenv looks up the environment variables named by ${NAME}.
	getenv func(string) (string, bool)
}

// load runs the three stages, decode, readSecrets and Validate, and reports
// the problems of all of them (only decode's when it stopped early).
func (l loader) load(data []byte) (*Config, error) {
	c, d, err := l.decode(data)
	if err != nil {
		return nil, err
	}
	probs := d.probs
	if !d.full() {
		l.readSecrets(c, &probs, d.lines)
		for _, e := range c.validate() {
			// A key that could not be read keeps its default: do not also
			// report what validation thinks of that default.
			if !coveredBy(e.Key, probs) {
				probs = append(probs, e)
			}
		}
	}
	if len(probs) > 0 {
		for _, e := range probs {
			l.locate(e, d.lines)
		}
		return nil, probs.err()
	}
	if l.mode&0o044 != 0 {
		for _, key := range d.literalSecrets {
			l.warn(c, d.lines, key, fmt.Errorf("a secret is written in a file that group or others can read (mode %04o): chmod 600 %s, or move the secret to bind_password_file or ${ENV}", l.mode.Perm(), l.source))
		}
	}
	return c, nil
}

// decode parses data and fills a Config over Default(). A YAML syntax error
// ends it at once; other problems are collected in the returned decoder.
func (l loader) decode(data []byte) (*Config, *decoder, error) {
	c := Default()
	d := newDecoder(l.getenv)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fileError(l.source, 0, fmt.Errorf("parse YAML: %w", err))
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, nil, fileError(l.source, next.Line, errors.New("a second YAML document (after ---): keep the configuration in one document"))
	case !errors.Is(err, io.EOF):
		return nil, nil, fileError(l.source, 0, fmt.Errorf("parse YAML: %w", err))
	}
	if len(doc.Content) > 0 {
		d.value(doc.Content[0], reflect.ValueOf(&c).Elem(), "")
	}
	if d.full() {
		d.fail("", 0, fmt.Errorf("stopped after %d problems: fix these first", maxDecodeProblems))
	}
	return &c, d, nil
}

// fileError reports a problem with the whole file, in the same form as the
// problems with keys.
func fileError(source string, line int, err error) error {
	return problems{{Source: source, Line: line, Err: err}}.err()
}

// readSecrets reads bind_password_file into BindPassword and
// search.proxy_password_file into Search.ProxyPassword, recording problems in
// probs and warnings in c.
func (l loader) readSecrets(c *Config, probs *problems, lines map[string]int) {
	l.readSecret(c, probs, lines, "upstream.bind_password", &c.Upstream.BindPassword, c.Upstream.BindPasswordFile)
	l.readSecret(c, probs, lines, "search.proxy_password", &c.Search.ProxyPassword, c.Search.ProxyPasswordFile)
}

// readSecret reads the file named by the key key+"_file" into *secret.
func (l loader) readSecret(c *Config, probs *problems, lines map[string]int, key string, secret *Secret, path string) {
	fileKey := key + "_file"
	if path == "" {
		return
	}
	name := key[strings.LastIndexByte(key, '.')+1:]
	if *secret != "" {
		probs.add(fileKey, fmt.Errorf("%s is set too: set only one of %s and %s_file", name, name, name))
		return
	}
	pw, mode, err := readSecretFile(path)
	if err != nil {
		probs.add(fileKey, err)
		return
	}
	*secret = Secret(pw)
	if mode&0o044 != 0 {
		l.warn(c, lines, fileKey, fmt.Errorf("%s can be read by group or others (mode %04o): chmod 600 it", path, mode.Perm()))
	}
}

// readSecretFile reads a secret from a regular file, without its trailing line
// breaks, and returns the file's mode. It refuses anything but a regular file
// so that a path like /dev/stdin cannot block the load.
func readSecretFile(path string) (string, fs.FileMode, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", 0, fmt.Errorf("%w: create it holding the password, mode 0600", err)
	}
	if !st.Mode().IsRegular() {
		return "", 0, fmt.Errorf("%s is not a regular file: point it at a file holding the password", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("%w: make it readable by the user ldapgate runs as, and by no one else", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxSecretFileBytes {
		return "", 0, fmt.Errorf("%s is longer than %d bytes: point it at the file holding only the password", path, maxSecretFileBytes)
	}
	pw := strings.TrimRight(string(data), "\r\n")
	if strings.TrimSpace(pw) == "" {
		return "", 0, fmt.Errorf("%s is empty: put the password in it (an empty password is an anonymous bind to AD)", path)
	}
	return pw, st.Mode(), nil
}

// warn records a warning about key in c, located like an error.
func (l loader) warn(c *Config, lines map[string]int, key string, err error) {
	e := &Error{Key: key, Err: err}
	l.locate(e, lines)
	c.warnings = append(c.warnings, e.Error())
}

// locate fills in e's source and, when the key (or the nearest section holding
// it) is in the file, its line.
func (l loader) locate(e *Error, lines map[string]int) {
	if e.Source == "" {
		e.Source = l.source
	}
	for k := e.Key; e.Line == 0 && k != ""; k = parentKey(k) {
		e.Line = lines[k]
	}
}

// parentKey returns the path of the section or list holding key: "a.b[1].c"
// gives "a.b[1]", then "a.b", then "a", then "".
func parentKey(key string) string {
	i := strings.LastIndexAny(key, ".[")
	if i < 0 {
		return ""
	}
	return key[:i]
}

// coveredBy reports whether key is, or is inside, a key that already has a
// problem.
func coveredBy(key string, probs problems) bool {
	for _, p := range probs {
		if p.Key == "" {
			continue
		}
		if key == p.Key || strings.HasPrefix(key, p.Key+".") || strings.HasPrefix(key, p.Key+"[") {
			return true
		}
	}
	return false
}
