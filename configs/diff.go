package configs

import "reflect"

// Changed lists the keys whose values differ between a and b, in schema order,
// as paths like "upstream.pool.bind_size". A list is one key
// ("upstream.servers"), whatever in it changed. Secrets are compared like the
// other values; the list holds only their keys.
func Changed(a, b *Config) []string {
	var keys []string
	changed(reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), "", &keys)
	return keys
}

// changed appends the keys under parent whose values differ between the
// structs a and b.
func changed(a, b reflect.Value, parent string, keys *[]string) {
	for _, f := range yamlFields(a.Type()) {
		key := joinKey(parent, f.name)
		fa, fb := a.Field(f.index), b.Field(f.index)
		switch {
		case fa.Kind() == reflect.Struct:
			changed(fa, fb, key, keys)
		case !reflect.DeepEqual(fa.Interface(), fb.Interface()):
			*keys = append(*keys, key)
		}
	}
}
