package agent

import (
	"net/http"
	"testing"

	"github.com/sbx-dev/sbx/api"
)

func TestPatchEnv(t *testing.T) {
	t.Setenv("SBX_TEST_BASE", "base")
	c, _ := startExecAgent(t, Config{})
	c.call(t, "POST", "/sessions", api.CreateSessionRequest{ID: "early", Env: map[string]string{"OWN": "own"}}, nil)
	c.sessionExec(t, "early", "true") // its shell exists before the patch

	var got api.SandboxEnv
	c.call(t, "PATCH", "/env", api.EnvPatch{"SBX_A": ptr("a 'quoted' $value"), "SBX_TEST_BASE": nil, "OWN": ptr("patched")}, &got)
	if got.Env["SBX_A"] != "a 'quoted' $value" || got.Env["OWN"] != "patched" {
		t.Errorf("answer: %v", got.Env)
	}
	if _, ok := got.Env["SBX_TEST_BASE"]; ok {
		t.Errorf("unset variable still in %v", got.Env)
	}
	const show = `echo "[$SBX_A] [${SBX_TEST_BASE-unset}] [$OWN]"`
	want := "[a 'quoted' $value] [unset] [patched]\n"
	for _, req := range []api.ExecRequest{
		{Command: show},
		{Command: show, Session: "early"},
		{Command: show, Session: "default"},
	} {
		if res := c.exec(t, req); res.Stdout != want {
			t.Errorf("session %q: %q, want %q", req.Session, res.Stdout, want)
		}
	}
	// A later patch reaches the existing sessions again; the session's own
	// changes in between are overridden only for the patched names.
	c.sessionExec(t, "early", "export SBX_A=mine OTHER=mine")
	c.call(t, "PATCH", "/env", api.EnvPatch{"SBX_B": ptr("b")}, nil)
	if res := c.sessionExec(t, "early", `echo "$SBX_A $SBX_B $OTHER"`); res.Stdout != "mine b mine\n" {
		t.Errorf("after the second patch: %q", res.Stdout)
	}
	c.call(t, "PATCH", "/env", api.EnvPatch{"SBX_A": nil}, nil)
	if res := c.sessionExec(t, "early", `echo "[${SBX_A-unset}]"`); res.Stdout != "[unset]\n" {
		t.Errorf("unset in session: %q", res.Stdout)
	}
	// Per-call env still wins.
	if res := c.exec(t, api.ExecRequest{Command: `echo $SBX_B`, Env: map[string]string{"SBX_B": "call"}}); res.Stdout != "call\n" {
		t.Errorf("per-call env: %q", res.Stdout)
	}
	for name, body := range map[string]string{
		"empty":        `{}`,
		"bad name":     `{"1X":"v"}`,
		"dotted name":  `{"A.B":"v"}`,
		"not a string": `{"A":1}`,
		"NUL value":    `{"A":"x\u0000"}`,
	} {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest("PATCH", "http://agent/env", stringsReader(body))
			resp, err := c.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 400 {
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
}
