package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func TestPorts(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sbx.db")
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	rows := []Port{
		{SandboxID: "a", Port: 8080, Token: "tok1", Name: "web", ListenPort: 40001, State: PortExposed, CreatedAt: t0},
		{SandboxID: "a", Port: 3000, Token: "tok2", State: PortUnexposed, CreatedAt: t0, EndedAt: t0},
		{SandboxID: "b", Port: 8080, Token: "tok3", State: PortExposed, CreatedAt: t0},
	}
	for _, r := range rows {
		if err := st.PutPort(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// A second live row for the same sandbox port is refused.
	if err := st.PutPort(ctx, Port{SandboxID: "a", Port: 8080, Token: "other", State: PortExposed, CreatedAt: t0}); err == nil {
		t.Error("two live exposures of one port were stored")
	}
	// Updating by key changes the row in place.
	rows[0].Name = "renamed"
	if err := st.PutPort(ctx, rows[0]); err != nil {
		t.Fatal(err)
	}
	if n, err := st.EndPorts(ctx, "a", t0.Add(time.Second)); err != nil || n != 2 {
		t.Fatalf("EndPorts = %d, %v; want 2", n, err)
	}
	// Once ended, the port may be exposed again with a new token.
	if err := st.PutPort(ctx, Port{SandboxID: "a", Port: 8080, Token: "tok4", State: PortExposed, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	// Everything survives a reopen.
	st, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, err := st.ListPorts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		id, token, name, state string
		port, listen           int
		ended                  time.Time
	}{
		{"a", "tok2", "", PortEnded, 3000, 0, t0},
		{"a", "tok1", "renamed", PortEnded, 8080, 40001, t0.Add(time.Second)},
		{"a", "tok4", "", PortExposed, 8080, 0, time.Time{}},
		{"b", "tok3", "", PortExposed, 8080, 0, time.Time{}},
	}
	if len(got) != len(want) {
		t.Fatalf("ListPorts = %+v", got)
	}
	for i, w := range want {
		g := got[i]
		if g.SandboxID != w.id || g.Token != w.token || g.Name != w.name || g.State != w.state || g.Port != w.port ||
			g.ListenPort != w.listen || !g.EndedAt.Equal(w.ended) || !g.CreatedAt.Equal(t0) {
			t.Errorf("row %d = %+v, want %+v", i, g, w)
		}
	}
	// Pruning forgets ended rows older than the cutoff, nothing else.
	if err := st.PrunePorts(ctx, t0.Add(500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.ListPorts(ctx); len(got) != 3 || got[0].Token != "tok1" {
		t.Errorf("after prune: %+v", got)
	}
}
