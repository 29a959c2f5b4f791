package oci

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPruneAgents(t *testing.T) {
	data := t.TempDir()
	agents := filepath.Join(data, "agent")
	sandboxes := filepath.Join(data, "sandboxes")
	bundle := filepath.Join(sandboxes, "box", "bundle")
	for _, d := range []string{agents, bundle} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := func(name string) string { return filepath.Join(agents, "sbx-agent-"+name) }
	for _, name := range []string{"current", "inuse", "old"} {
		if err := os.WriteFile(path(name), []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := `{"mounts":[{"destination":"/.sbx/sbx-agent","source":"` + path("inuse") + `"}]}`
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := pruneAgents(data, path("current"), sandboxes); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"current": true, "inuse": true, "old": false} {
		if _, err := os.Stat(path(name)); (err == nil) != want {
			t.Errorf("sbx-agent-%s exists = %v, want %v", name, err == nil, want)
		}
	}
	// Nothing to do without sandboxes or old copies.
	if err := pruneAgents(t.TempDir(), "x", filepath.Join(data, "none")); err != nil {
		t.Errorf("empty data dir: %v", err)
	}
}
