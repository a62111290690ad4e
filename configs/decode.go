package configs

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxDecodeProblems stops a decode that has found this many problems. Besides
// sparing the reader, it bounds the work: once a file is valid against the
// schema, each alias expands to a few known keys, so only a document full of
// unknown or repeated keys reached through aliases could make a small file cost
// much to walk, and each of those is a problem.
const maxDecodeProblems = 50

// decoder fills a Config from a parsed YAML tree, walking the tree alongside the
// Config's type. Walking it ourselves instead of yaml.v3's Decoder.KnownFields
// gives every problem its key path (KnownFields reports only a line), expands
// ${ENV} per scalar after parsing (so an environment value cannot change the
// document's structure), and reports all problems instead of the first.
type decoder struct {
	// getenv looks up environment variables for ${NAME}.
	getenv func(string) (string, bool)
	// lines maps each key path found in the file to its line.
	lines map[string]int
	// literalSecrets are the key paths of Secret values written in the file
	// itself rather than taken from ${ENV}.
	literalSecrets []string
	// probs collects the problems found.
	probs problems
}

// newDecoder returns a decoder that looks up ${NAME} with getenv.
func newDecoder(getenv func(string) (string, bool)) *decoder {
	return &decoder{getenv: getenv, lines: make(map[string]int)}
}

// fail records a problem at key on line.
func (d *decoder) fail(key string, line int, err error) {
	d.probs = append(d.probs, &Error{Key: key, Line: line, Err: err})
}

// full reports whether the decode has found enough problems to stop.
func (d *decoder) full() bool { return len(d.probs) >= maxDecodeProblems }

// value decodes n into v, which must be addressable; key is v's path.
func (d *decoder) value(n *yaml.Node, v reflect.Value, key string) {
	if d.full() {
		return
	}
	n = resolveAlias(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // "key:" with no value keeps the default, as an absent key does
	}
	switch v.Kind() {
	case reflect.Struct:
		d.mapping(n, v, key)
	case reflect.Slice:
		d.sequence(n, v, key)
	default:
		d.scalar(n, v, key)
	}
}

// mapping decodes a YAML mapping into the struct v.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, key string) {
	fields := yamlFields(v.Type())
	if n.Kind != yaml.MappingNode {
		d.fail(key, n.Line, fmt.Errorf("must be a section of keys (%s), not %s", fieldNames(fields), kindName(n)))
		return
	}
	first := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		if d.full() {
			return
		}
		k, val := resolveAlias(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(key, k.Line, errors.New("a key must be a plain name, not a list or section"))
			continue
		}
		path := joinKey(key, k.Value)
		if k.ShortTag() == "!!merge" {
			d.fail(path, k.Line, errors.New("merge keys are not supported: write the keys out"))
			continue
		}
		if line, dup := first[k.Value]; dup {
			d.fail(path, k.Line, fmt.Errorf("set twice (first on line %d): keep one", line))
			continue
		}
		first[k.Value] = k.Line
		idx, ok := fieldIndex(fields, k.Value)
		if !ok {
			where := "here"
			if key != "" {
				where = "under " + key
			}
			d.fail(path, k.Line, fmt.Errorf("unknown key: check the spelling; the keys %s are %s", where, fieldNames(fields)))
			continue
		}
		d.lines[path] = k.Line
		d.value(val, v.Field(idx), path)
	}
}

// sequence decodes a YAML sequence into the slice v, replacing its default.
func (d *decoder) sequence(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind != yaml.SequenceNode {
		d.fail(key, n.Line, fmt.Errorf("must be a list (one \"- \" item per entry), not %s", kindName(n)))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		path := fmt.Sprintf("%s[%d]", key, i)
		d.lines[path] = item.Line
		d.value(item, s.Index(i), path)
	}
	v.Set(s)
}

// scalar expands ${ENV} in a single value and decodes it into v.
func (d *decoder) scalar(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind != yaml.ScalarNode {
		d.fail(key, n.Line, fmt.Errorf("must be a single value, not %s", kindName(n)))
		return
	}
	expanded, substituted, err := expand(n.Value, d.getenv)
	if err != nil {
		d.fail(key, n.Line, err)
		return
	}
	// Decode a copy: an anchored node is reached once per alias, and expanding
	// it in place would expand an unescaped $${ a second time.
	c := *n
	if expanded != n.Value {
		c.Value = expanded
		if n.Style&(yaml.TaggedStyle|yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
			// A plain scalar's type is resolved from its text: resolve the
			// expanded text, so ${N} can fill a number, but an empty or "~"
			// value stays an empty string instead of turning into "no value".
			c.Tag = ""
			if c.ShortTag() == "!!null" {
				c.Tag = "!!str"
			}
		}
	}
	if err := c.Decode(v.Addr().Interface()); err != nil {
		d.fail(key, n.Line, typeError(v.Type(), expanded))
		return
	}
	if v.Type() == reflect.TypeFor[Secret]() && !substituted && expanded != "" {
		d.literalSecrets = append(d.literalSecrets, key)
	}
}

// typeError says which kind of value key wants. It quotes the bad value only
// for numbers, booleans and durations, never for a string that may be a secret.
func typeError(t reflect.Type, value string) error {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return fmt.Errorf("must be a duration with a unit, such as 500ms, 5s or 10m, not %q", value)
	case t.Kind() == reflect.Bool:
		return fmt.Errorf("must be true or false, not %q", value)
	case t.Kind() == reflect.Int:
		return fmt.Errorf("must be a whole number, not %q", value)
	default:
		return errors.New("must be a single text value")
	}
}

// resolveAlias follows n to the node it is an alias of, if it is one.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// yamlField is one exported field of a struct and its YAML key.
type yamlField struct {
	name  string
	index int
}

// yamlFields lists t's exported fields with a YAML key, in declaration order.
func yamlFields(t reflect.Type) []yamlField {
	var fields []yamlField
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if f.IsExported() && name != "" && name != "-" {
			fields = append(fields, yamlField{name: name, index: i})
		}
	}
	return fields
}

// fieldIndex returns the index of the field with YAML key name.
func fieldIndex(fields []yamlField, name string) (int, bool) {
	for _, f := range fields {
		if f.name == name {
			return f.index, true
		}
	}
	return 0, false
}

// fieldNames lists the YAML keys of fields for error messages.
func fieldNames(fields []yamlField) string {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	return strings.Join(names, ", ")
}

// kindName names the kind of a YAML node for error messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a section"
	case yaml.SequenceNode:
		return "a list"
	default:
		return "a single value"
	}
}

// joinKey appends name to the key path parent.
func joinKey(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}
