package configs

import (
	"errors"
	"fmt"
	"strings"
)

// Error is one problem with one key of a configuration. Load, Parse and Validate
// report every problem they find, each an *Error, joined with errors.Join: use
// errors.As to reach the first, or the joined error's Unwrap() []error to list
// them all.
type Error struct {
	// Source is the file the key was read from; "" when the configuration was
	// not parsed from one.
	Source string
	// Line is the key's line in Source; 0 when unknown (the key was not in the
	// file, or the configuration was built in code).
	Line int
	// Key is the key's path, e.g. "upstream.servers[1].url"; "" for a problem
	// with the whole file.
	Key string
	// Err says what is wrong and what to do about it.
	Err error
}

// Error formats the problem as "config: SOURCE:LINE: KEY: PROBLEM", leaving out
// the parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	switch {
	case e.Source != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.Source, e.Line)
	case e.Source != "":
		b.WriteString(e.Source + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the underlying problem, e.g. an *fs.PathError.
func (e *Error) Unwrap() error { return e.Err }

// problems collects the *Error values of one load or validation.
type problems []*Error

// add records err against key.
func (p *problems) add(key string, err error) {
	*p = append(*p, &Error{Key: key, Err: err})
}

// addf records a formatted problem (which may wrap an error with %w) against key.
func (p *problems) addf(key, format string, args ...any) {
	p.add(key, fmt.Errorf(format, args...))
}

// err joins the problems into one error; nil when there are none.
func (p problems) err() error {
	errs := make([]error, len(p))
	for i, e := range p {
		errs[i] = e
	}
	return errors.Join(errs...)
}
