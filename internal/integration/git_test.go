package integration

import (
	"errors"
	"io"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/client"
	"github.com/sbx-dev/sbx/internal/network/nettest"
)

const (
	gitUser   = "alice"
	gitSecret = "s3cretTOKEN4242"
)

// startGitServer builds a repository with two commits on main and one more
// on branch feature, and serves it over git's smart HTTP protocol (`git
// http-backend` as a CGI program) from a host of the test's own internet
// (package nettest): /git/ openly, /private/ behind basic auth. The
// sandboxes reach it as they would reach a forge, by name through the
// test's DNS and their normal egress. It returns the daemon and the base
// URL.
func startGitServer(t *testing.T) (*Daemon, string) {
	t.Helper()
	d, in := netDaemon(t)
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Fatal("git is not installed on this machine")
	}
	root := t.TempDir()
	cmd := exec.Command("bash", "-c", `set -e
git init -q -b main src && cd src
echo one > f && git add f && git commit -qm one
echo two > f && git commit -qam two
git checkout -qb feature && echo three > g && git add g && git commit -qm three && git checkout -q main
cd .. && git clone -q --bare src srv/repo.git`)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.test", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.test")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the repository: %v\n%s", err, out)
	}
	backend := func(prefix string) http.Handler {
		return &cgi.Handler{Path: gitPath, Args: []string{"http-backend"}, Root: prefix, Stderr: io.Discard,
			Env: []string{"GIT_PROJECT_ROOT=" + filepath.Join(root, "srv"), "GIT_HTTP_EXPORT_ALL=1"}}
	}
	in.Handle("/git/", backend("/git"))
	private := backend("/private")
	in.Handle("/private/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != gitUser || p != gitSecret {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		private.ServeHTTP(w, r)
	}))
	return d, "http://" + nettest.WebName
}

func TestGitCheckout(t *testing.T) {
	d, base := startGitServer(t)
	ctx := ctxT(t)
	sb := d.Client.Sandbox("git")

	t.Run("branch at depth 1", func(t *testing.T) {
		res, err := sb.GitCheckout(ctx, api.GitCheckoutRequest{URL: base + "/git/repo.git", Branch: "feature", Depth: 1})
		if err != nil {
			t.Fatal(err)
		}
		if res.TargetDir != "/workspace/repo" || res.Branch != "feature" || len(res.Commit) != 40 || res.URL != base+"/git/repo.git" {
			t.Errorf("result %+v", res)
		}
		out := mustExec(t, d, "git", "cd /workspace/repo && git rev-list --count HEAD && git branch --show-current && cat g && git rev-parse HEAD")
		if want := "1\nfeature\nthree\n" + res.Commit + "\n"; out.Stdout != want {
			t.Errorf("clone: %q, want %q (%s)", out.Stdout, want, out.Stderr)
		}
	})
	t.Run("default branch, whole history", func(t *testing.T) {
		res, err := sb.GitCheckout(ctx, api.GitCheckoutRequest{URL: base + "/git/repo.git", TargetDir: "full"})
		if err != nil {
			t.Fatal(err)
		}
		out := mustExec(t, d, "git", "cd /workspace/full && git rev-list --count HEAD && git branch --show-current")
		if res.TargetDir != "/workspace/full" || res.Branch != "main" || out.Stdout != "2\nmain\n" {
			t.Errorf("result %+v, clone %q", res, out.Stdout)
		}
	})

	// Credentials, in the URL or as fields, are used and then gone.
	creds := []struct {
		name string
		req  api.GitCheckoutRequest
	}{
		{"credentials in the URL", api.GitCheckoutRequest{URL: "http://" + gitUser + ":" + gitSecret + "@" + nettest.WebName + "/private/repo.git", TargetDir: "/srv/clones/url", Depth: 1}},
		{"credentials as fields", api.GitCheckoutRequest{URL: base + "/private/repo.git", Username: gitUser, Token: gitSecret, TargetDir: "/srv/clones/fields", Branch: "feature"}},
	}
	for _, tc := range creds {
		t.Run(tc.name, func(t *testing.T) {
			res, err := sb.GitCheckout(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if res.URL != base+"/private/repo.git" {
				t.Errorf("origin %q still carries credentials", res.URL)
			}
			out := mustExec(t, d, "git", "cd "+tc.req.TargetDir+" && git config --get remote.origin.url && "+
				"grep -rl "+gitSecret+" .git /root /etc/gitconfig 2>/dev/null; git config --show-origin --list | grep -c credential; true")
			if want := base + "/private/repo.git\n0\n"; out.Stdout != want {
				t.Errorf("after the clone: %q, want %q: the secret or a credential helper was left behind", out.Stdout, want)
			}
		})
	}
	if strings.Contains(d.Logs(), gitSecret) {
		t.Errorf("sbxd logged the git secret")
	}

	failures := []struct {
		name   string
		req    api.GitCheckoutRequest
		status int
		code   string
	}{
		{"missing branch", api.GitCheckoutRequest{URL: base + "/git/repo.git", Branch: "nope", TargetDir: "f1"}, 404, api.CodeGitBranchNotFound},
		{"non-empty target", api.GitCheckoutRequest{URL: base + "/git/repo.git"}, 409, api.CodeTargetNotEmpty},
		{"target is a file", api.GitCheckoutRequest{URL: base + "/git/repo.git", TargetDir: "/etc/hostname"}, 409, api.CodeTargetNotEmpty},
		{"connection refused", api.GitCheckoutRequest{URL: "http://" + nettest.WebName + ":81/git/repo.git", TargetDir: "f2"}, 502, api.CodeGitUnreachable},
		{"unknown host", api.GitCheckoutRequest{URL: "http://nope.sbx.test/git/repo.git", TargetDir: "f2"}, 502, api.CodeGitUnreachable},
		{"no such repository", api.GitCheckoutRequest{URL: base + "/git/nope.git", TargetDir: "f3"}, 404, api.CodeGitRepoNotFound},
		{"credentials missing", api.GitCheckoutRequest{URL: base + "/private/repo.git", TargetDir: "f4"}, 403, api.CodeGitAuthFailed},
		{"credentials wrong", api.GitCheckoutRequest{URL: base + "/private/repo.git", Token: "wrong-token", TargetDir: "f5"}, 403, api.CodeGitAuthFailed},
		{"bad URL", api.GitCheckoutRequest{URL: "ftp://example.test/repo.git"}, 400, api.CodeInvalidRequest},
		{"bad depth", api.GitCheckoutRequest{URL: base + "/git/repo.git", Depth: -1}, 400, api.CodeInvalidRequest},
		{"option as branch", api.GitCheckoutRequest{URL: base + "/git/repo.git", Branch: "--upload-pack=touch /tmp/x"}, 400, api.CodeInvalidRequest},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sb.GitCheckout(ctx, tc.req)
			var e *client.Error
			if !errors.As(err, &e) || e.Status != tc.status || e.Code != tc.code {
				t.Fatalf("err = %v, want %d %s", err, tc.status, tc.code)
			}
			t.Logf("%d %s: %s", e.Status, e.Code, e.Message)
			if strings.Contains(e.Message, "wrong-token") || strings.Contains(e.Message, gitSecret) {
				t.Errorf("message shows the credentials: %s", e.Message)
			}
		})
	}
	// Failed clones leave nothing behind.
	out := mustExec(t, d, "git", "ls /workspace")
	if out.Stdout != "full\nrepo\n" {
		t.Errorf("/workspace after the failures: %q", out.Stdout)
	}
}

func TestGitCloneCLI(t *testing.T) {
	d, base := startGitServer(t)
	out, errOut, code := d.CLI(nil, "git", "clone", "gitcli", base+"/git/repo.git", "--branch", "feature", "--depth", "1", "--dir", "cli")
	if code != 0 || !strings.Contains(out, "cloned "+base+"/git/repo.git into /workspace/cli (feature at ") {
		t.Fatalf("sbx git clone: %d %q %q", code, out, errOut)
	}
	res := mustExec(t, d, "gitcli", "git -C /workspace/cli rev-list --count HEAD")
	if res.Stdout != "1\n" {
		t.Errorf("depth: %q", res.Stdout)
	}
	// The token on stdin, never on the command line.
	out, errOut, code = d.CLI(strings.NewReader(gitSecret+"\n"), "git", "clone", "gitcli", base+"/private/repo.git",
		"--username", gitUser, "--token-stdin", "--dir", "/srv/priv", "--json")
	if code != 0 || !strings.Contains(out, `"targetDir": "/srv/priv"`) {
		t.Fatalf("sbx git clone --token-stdin: %d %q %q", code, out, errOut)
	}
	_, errOut, code = d.CLI(nil, "git", "clone", "gitcli", base+"/git/repo.git", "--branch", "nope", "--dir", "x")
	if code == 0 || !strings.Contains(errOut, api.CodeGitBranchNotFound) {
		t.Errorf("missing branch: %d %q", code, errOut)
	}
	if strings.Contains(d.Logs(), gitSecret) {
		t.Errorf("sbxd logged the git secret")
	}
}
