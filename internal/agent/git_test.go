package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/internal/errdefs"
)

func TestSplitCredentials(t *testing.T) {
	tests := []struct {
		name                string
		req                 api.GitCheckoutRequest
		url, user, password string
	}{
		{"none", api.GitCheckoutRequest{URL: "https://h/o/r.git"}, "https://h/o/r.git", "", ""},
		{"in the URL", api.GitCheckoutRequest{URL: "https://bob:p%40ss@h/o/r.git"}, "https://h/o/r.git", "bob", "p@ss"},
		{"token field", api.GitCheckoutRequest{URL: "https://h/o/r.git", Token: "tok"}, "https://h/o/r.git", api.DefaultGitUsername, "tok"},
		{"token and username", api.GitCheckoutRequest{URL: "https://h/o/r.git", Username: "oauth2", Token: "tok"}, "https://h/o/r.git", "oauth2", "tok"},
		{"user in URL, token field", api.GitCheckoutRequest{URL: "https://carol@h/o/r.git", Token: "tok"}, "https://h/o/r.git", "carol", "tok"},
		{"token as user in URL", api.GitCheckoutRequest{URL: "https://ghp_TOK@h/o/r.git"}, "https://h/o/r.git", "ghp_TOK", ""},
		{"token as user in http URL", api.GitCheckoutRequest{URL: "HTTP://ghp_TOK@127.0.0.1:8100/r.git"}, "http://127.0.0.1:8100/r.git", "ghp_TOK", ""},
		{"empty password in URL", api.GitCheckoutRequest{URL: "https://ghp_TOK:@h/o/r.git"}, "https://h/o/r.git", "ghp_TOK", ""},
		{"ssh user stays", api.GitCheckoutRequest{URL: "ssh://git@h/o/r.git"}, "ssh://git@h/o/r.git", "", ""},
		{"scp-like stays", api.GitCheckoutRequest{URL: "git@h:o/r.git"}, "git@h:o/r.git", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := splitCredentials(&tc.req)
			if c.url != tc.url || c.username != tc.user || c.password != tc.password {
				t.Errorf("got %q %q %q, want %q %q %q", c.url, c.username, c.password, tc.url, tc.user, tc.password)
			}
		})
	}
	redactions := []struct {
		creds   gitCredentials
		in, out string
	}{
		{gitCredentials{username: "bob", password: "p@ss word"}, "fatal: bob: p@ss word and p%40ss+word and p%40ss%20word",
			"fatal: bob: *** and *** and ***"},
		{gitCredentials{username: "ghp_TOK"}, "fatal: 'http://ghp_TOK@h/r.git' refused", "fatal: 'http://***@h/r.git' refused"},
		{gitCredentials{}, "fatal: nothing secret", "fatal: nothing secret"},
	}
	for _, tc := range redactions {
		if got := tc.creds.redact(tc.in); got != tc.out {
			t.Errorf("redact(%q) = %q, want %q", tc.in, got, tc.out)
		}
	}
	stored := []struct {
		creds  gitCredentials
		config string
		want   bool
	}{
		{gitCredentials{username: "bob", password: "pw"}, "url = https://bob:pw@h/bob/r.git", true},
		{gitCredentials{username: "bob", password: "pw"}, "url = https://h/bob/r.git", false},
		{gitCredentials{username: "ghp_TOK"}, "url = https://ghp_TOK@h/o/r.git", true},
		{gitCredentials{username: "alice"}, "url = https://h/alice/r.git", false},
	}
	for _, tc := range stored {
		if got := tc.creds.storedIn(tc.config); got != tc.want {
			t.Errorf("%+v storedIn(%q) = %v, want %v", tc.creds, tc.config, got, tc.want)
		}
	}
}

func TestClassifyGitFailure(t *testing.T) {
	// Messages of git 2.39 (LC_ALL=C) and its curl transport.
	tests := []struct {
		out  string
		want error
	}{
		{"warning: Could not find remote branch nope to clone.\nfatal: Remote branch nope not found in upstream origin", errdefs.ErrGitBranchNotFound},
		{"fatal: destination path 'r' already exists and is not an empty directory.", errdefs.ErrTargetNotEmpty},
		{"fatal: could not read Username for 'https://h': terminal prompts disabled", errdefs.ErrGitAuthFailed},
		{"remote: Invalid username or password.\nfatal: Authentication failed for 'https://h/o/r.git/'", errdefs.ErrGitAuthFailed},
		{"git@h: Permission denied (publickey).\nfatal: Could not read from remote repository.", errdefs.ErrGitAuthFailed},
		{"remote: Repository not found.\nfatal: repository 'https://h/o/r.git/' not found", errdefs.ErrGitRepoNotFound},
		{"fatal: unable to access 'https://h/o/r.git/': The requested URL returned error: 404", errdefs.ErrGitRepoNotFound},
		{"fatal: '/srv/x' does not appear to be a git repository", errdefs.ErrGitRepoNotFound},
		{"fatal: unable to access 'https://nope.test/r.git/': Could not resolve host: nope.test", errdefs.ErrGitUnreachable},
		{"fatal: unable to access 'http://127.0.0.1:1/r.git/': Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't connect to server", errdefs.ErrGitUnreachable},
		{"ssh: connect to host h port 22: Connection timed out\nfatal: Could not read from remote repository.", errdefs.ErrGitUnreachable},
		{"fatal: unable to access 'https://h/r.git/': The requested URL returned error: 500", errdefs.ErrGitFailed},
		{"error: RPC failed; curl 92 HTTP/2 stream 0 was not closed cleanly", errdefs.ErrGitFailed},
		{"", errdefs.ErrGitFailed},
	}
	for _, tc := range tests {
		err := classifyGitFailure(tc.out, "https://h/o/r.git", "nope", "/workspace/r")
		if !errors.Is(err, tc.want) {
			t.Errorf("%q: %v, want %v", tc.out, err, tc.want)
		}
	}
}

// gitIn runs git in dir through the agent's own exec (the test process's
// reaper owns every child, so os/exec's Wait may not be used).
func gitIn(t *testing.T, c *testClient, dir, script string) string {
	t.Helper()
	res := c.exec(t, api.ExecRequest{Command: script, Cwd: dir, Env: map[string]string{
		"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.test", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.test",
		"GIT_CONFIG_GLOBAL": "/dev/null",
	}})
	if res.ExitCode != 0 {
		t.Fatalf("%s: %d %s%s", script, res.ExitCode, res.Stdout, res.Stderr)
	}
	return res.Stdout
}

func TestGitCheckoutLocal(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	c, cfg := startAgent(t, Config{})
	src := t.TempDir()
	gitIn(t, c, src, `git init -q -b main . && echo one > f && git add f && git commit -qm one &&
echo two > f && git commit -qam two && git checkout -qb feature && echo three > g && git add g && git commit -qm three &&
git checkout -q main && git pack-refs --all`)
	checkout := func(req api.GitCheckoutRequest) (int, api.GitCheckoutResult, api.Error) {
		body, _ := json.Marshal(req)
		resp, err := c.post(context.Background(), "/git/checkout", body)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var res api.GitCheckoutResult
		var e api.Error
		if resp.StatusCode == http.StatusOK {
			_ = json.Unmarshal(b, &res)
		} else {
			_ = json.Unmarshal(b, &e)
		}
		return resp.StatusCode, res, e
	}
	repo := "file://" + src

	// A branch, shallow, into the default target under DefaultCwd.
	st, res, e := checkout(api.GitCheckoutRequest{URL: repo, Branch: "feature", Depth: 1})
	want := filepath.Join(cfg.DefaultCwd, filepath.Base(src))
	if st != 200 || res.TargetDir != want || res.Branch != "feature" || len(res.Commit) != 40 || res.URL != repo {
		t.Fatalf("checkout: %d %+v %+v", st, res, e)
	}
	if got := gitIn(t, c, want, "git rev-list --count HEAD; git rev-parse HEAD; cat g"); got != "1\n"+res.Commit+"\nthree\n" {
		t.Errorf("clone: %q", got)
	}
	// HEAD in packed-refs only: readHead finds it there too.
	gitIn(t, c, want, "git pack-refs --all")
	if b, c2, err := readHead(filepath.Join(want, ".git")); err != nil || b != "feature" || c2 != res.Commit {
		t.Errorf("readHead from packed-refs: %q %q %v", b, c2, err)
	}
	// A relative target lands under DefaultCwd; a tag detaches HEAD.
	gitIn(t, c, src, "git tag v1 main~1")
	if st, res, e := checkout(api.GitCheckoutRequest{URL: repo, Branch: "v1", TargetDir: "tagged"}); st != 200 ||
		res.TargetDir != filepath.Join(cfg.DefaultCwd, "tagged") || res.Branch != "" {
		t.Errorf("tag: %d %+v %+v", st, res, e)
	}
	// An empty directory is a fine target.
	empty := filepath.Join(cfg.DefaultCwd, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if st, _, e := checkout(api.GitCheckoutRequest{URL: repo, TargetDir: empty}); st != 200 {
		t.Errorf("empty target: %d %+v", st, e)
	}

	failures := []struct {
		name   string
		req    api.GitCheckoutRequest
		status int
		code   string
	}{
		{"non-empty target", api.GitCheckoutRequest{URL: repo}, 409, api.CodeTargetNotEmpty},
		{"missing branch", api.GitCheckoutRequest{URL: repo, Branch: "nope", TargetDir: "x1"}, 404, api.CodeGitBranchNotFound},
		{"missing repository", api.GitCheckoutRequest{URL: "file://" + filepath.Join(src, "nope"), TargetDir: "x2"}, 404, api.CodeGitRepoNotFound},
		{"credentials over file://", api.GitCheckoutRequest{URL: repo, Token: "t", TargetDir: "x3"}, 400, api.CodeInvalidRequest},
		{"empty url", api.GitCheckoutRequest{}, 400, api.CodeInvalidRequest},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			st, _, e := checkout(tc.req)
			if st != tc.status || e.Code != tc.code || e.Message == "" {
				t.Errorf("%d %+v, want %d %s", st, e, tc.status, tc.code)
			}
		})
	}
	for _, name := range []string{"x1", "x2", "x3"} {
		if _, err := os.Stat(filepath.Join(cfg.DefaultCwd, name)); err == nil {
			t.Errorf("failed clone left %s behind", name)
		}
	}
}

// TestGitCheckoutTokenAsUser clones over HTTP with a token in the URL's
// user name (https://TOKEN@host/…): the token is sent, and neither kept
// in the clone's config nor echoed.
func TestGitCheckoutTokenAsUser(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	const token = "ghp_SECRETTOKEN123"
	c, cfg := startAgent(t, Config{})
	src := t.TempDir()
	gitIn(t, c, src, `git init -q -b main work && cd work && echo one > f && git add f && git commit -qm one &&
cd .. && git clone -q --bare work repo.git && git -C repo.git update-server-info`)
	// git's dumb HTTP protocol: plain files, no CGI child for the agent's
	// reaper to take.
	files := http.FileServer(http.Dir(src))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, _, ok := r.BasicAuth(); !ok || u != token {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")

	tests := []struct {
		name, url, target string
		status            int
		code              string
	}{
		{"token as user", "http://" + token + "@" + host + "/repo.git", "ok", 200, ""},
		{"wrong token", "http://ghp_WRONG999@" + host + "/repo.git", "wrong", 403, api.CodeGitAuthFailed},
		{"no token", srv.URL + "/repo.git", "none", 403, api.CodeGitAuthFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := c.do(t, "POST", "/git/checkout", api.GitCheckoutRequest{URL: tc.url, TargetDir: tc.target})
			var e api.Error
			_ = json.Unmarshal(body, &e)
			if status != tc.status || e.Code != tc.code {
				t.Fatalf("%d %s, want %d %s", status, body, tc.status, tc.code)
			}
			if strings.Contains(string(body), token) || strings.Contains(string(body), "ghp_WRONG999") {
				t.Errorf("the answer echoes the token: %s", body)
			}
			if status != 200 {
				return
			}
			var res api.GitCheckoutResult
			if err := json.Unmarshal(body, &res); err != nil || res.URL != srv.URL+"/repo.git" || len(res.Commit) != 40 {
				t.Errorf("result %s (%v), want url %s/repo.git", body, err, srv.URL)
			}
			gitCfg, err := os.ReadFile(filepath.Join(cfg.DefaultCwd, tc.target, ".git", "config"))
			if err != nil || strings.Contains(string(gitCfg), token) || !strings.Contains(string(gitCfg), srv.URL+"/repo.git") {
				t.Errorf(".git/config (%v):\n%s", err, gitCfg)
			}
		})
	}
}
