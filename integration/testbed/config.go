package testbed

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// GatewayConfig returns configs/testbed.yaml of the module at root with
// changes applied in order: each dotted key ("listen.address",
// "upstream.pool.bind_size") is set to its value, making the maps on the way.
// The integration tests and the benchmark (integration/bench) run the gateway
// in front of the test bed with it.
func GatewayConfig(root string, changes ...map[string]any) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(root, "configs", "testbed.yaml"))
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("configs/testbed.yaml: %w", err)
	}
	for _, m := range changes {
		for key, v := range m {
			setKey(doc, key, v)
		}
	}
	return yaml.Marshal(doc)
}

// setKey sets a dotted key in a YAML document.
func setKey(doc map[string]any, key string, v any) {
	parts := strings.Split(key, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := doc[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			doc[p] = next
		}
		doc = next
	}
	doc[parts[len(parts)-1]] = v
}
