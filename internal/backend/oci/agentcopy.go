package oci

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// installAgent copies the agent binary into <dataDir>/agent under a name
// derived from its content and returns that path. Sandboxes then never
// depend on where sbxd was built (a home directory the sandbox's
// unprivileged root cannot traverse, say), and replacing the binary on disk
// never changes the one running sandboxes have bound.
func installAgent(src, dataDir string) (string, error) {
	f, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	dir := filepath.Join(dataDir, "agent")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	dst := filepath.Join(dir, "sbx-agent-"+hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-agent-")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, f); err != nil {
		tmp.Close()
		return "", fmt.Errorf("copy agent: %w", err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return dst, os.Rename(tmp.Name(), dst)
}

// pruneAgents removes the agent copies in <dataDir>/agent other than
// current that no sandbox's bundle still names (a sandbox started by an
// earlier sbxd keeps its copy bound until it is destroyed). Unreadable
// bundles keep every copy: better a stale file than a running sandbox
// whose agent binary went away.
func pruneAgents(dataDir, current, sandboxes string) error {
	dir := filepath.Join(dataDir, "agent")
	copies, err := filepath.Glob(filepath.Join(dir, "sbx-agent-*"))
	if err != nil || len(copies) <= 1 {
		return err
	}
	var bundles [][]byte
	ents, err := os.ReadDir(sandboxes)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(sandboxes, e.Name(), "bundle", "config.json"))
		if err != nil && !os.IsNotExist(err) {
			return err
		}
		bundles = append(bundles, b)
	}
	for _, c := range copies {
		if c == current || strings.Contains(filepath.Base(c), ".tmp") {
			continue
		}
		used := false
		for _, b := range bundles {
			if bytes.Contains(b, []byte(c)) {
				used = true
				break
			}
		}
		if !used {
			if err := os.Remove(c); err != nil && !os.IsNotExist(err) {
				return err
			}
		}
	}
	return nil
}
