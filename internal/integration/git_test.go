package integration

import (
	"errors"
	"strings"
	"testing"

	"github.com/sbx-dev/sbx/api"
	"github.com/sbx-dev/sbx/client"
)

// gitHTTPServer serves the bare repositories under a root over git's smart
// HTTP protocol by running `git http-backend` as a CGI program (Python
// standard library only). Paths under /private/ need HTTP basic auth with
// $AUTH_USER and $AUTH_PASS.
const gitHTTPServer = `
import base64, http.server, os, subprocess, sys
port, root = int(sys.argv[1]), sys.argv[2]
want = 'Basic ' + base64.b64encode((os.environ['AUTH_USER'] + ':' + os.environ['AUTH_PASS']).encode()).decode()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self): self.cgi()
    def do_POST(self): self.cgi()
    def cgi(self):
        path, _, query = self.path.partition('?')
        if path.startswith('/private/'):
            if self.headers.get('Authorization') != want:
                self.send_response(401)
                self.send_header('WWW-Authenticate', 'Basic realm="git"')
                self.send_header('Content-Length', '0')
                self.end_headers()
                return
            path = path[len('/private'):]
        env = dict(os.environ, GIT_PROJECT_ROOT=root, GIT_HTTP_EXPORT_ALL='1', PATH_INFO=path, QUERY_STRING=query,
                   REQUEST_METHOD=self.command, CONTENT_TYPE=self.headers.get('Content-Type', ''), REMOTE_ADDR='127.0.0.1')
        if self.headers.get('Content-Encoding'):
            env['HTTP_CONTENT_ENCODING'] = self.headers['Content-Encoding']
        body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
        out = subprocess.run(['git', 'http-backend'], input=body, env=env, capture_output=True).stdout
        head, _, rest = out.partition(b'\r\n\r\n')
        status, headers = 200, []
        for line in head.decode().split('\r\n'):
            k, _, v = line.partition(':')
            if k.lower() == 'status':
                status = int(v.split()[0])
            elif k:
                headers.append((k, v.strip()))
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header('Content-Length', str(len(rest)))
        self.end_headers()
        self.wfile.write(rest)
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(('127.0.0.1', port), Handler).serve_forever()
`

const (
	gitUser   = "alice"
	gitSecret = "s3cretTOKEN4242"
)

// startGitServer builds a repository with two commits on main and one more
// on branch feature, and serves it over smart HTTP. The server runs inside
// sandbox id, on its loopback: this test is about checkout, not egress, so
// the agent's git reaches it without any network beyond the sandbox's own.
// It returns the server's base URL.
func startGitServer(t *testing.T, d *Daemon, id string) string {
	t.Helper()
	mustExec(t, d, id, "mkdir -p /srv && cat > /srv/githttp.py", client.WithStdin(gitHTTPServer))
	res := mustExec(t, d, id, `set -e
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.test GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.test
git init -q -b main /srv/src && cd /srv/src
echo one > f && git add f && git commit -qm one
echo two > f && git commit -qam two
git checkout -qb feature && echo three > g && git add g && git commit -qm three && git checkout -q main
mkdir -p /srv/git && git clone -q --bare /srv/src /srv/git/repo.git
AUTH_USER=`+gitUser+` AUTH_PASS=`+gitSecret+` nohup python3 /srv/githttp.py 8418 /srv/git >/srv/githttp.log 2>&1 &
for i in $(seq 100); do curl -sf -o /dev/null 'http://127.0.0.1:8418/repo.git/info/refs?service=git-upload-pack' && exit 0; sleep 0.05; done
cat /srv/githttp.log; exit 1`)
	if res.ExitCode != 0 {
		t.Fatalf("git server did not start: %s%s", res.Stdout, res.Stderr)
	}
	return "http://127.0.0.1:8418"
}

func TestGitCheckout(t *testing.T) {
	d := StartDaemon(t)
	ctx := ctxT(t)
	sb := d.Client.Sandbox("git")
	base := startGitServer(t, d, "git")

	t.Run("branch at depth 1", func(t *testing.T) {
		res, err := sb.GitCheckout(ctx, api.GitCheckoutRequest{URL: base + "/repo.git", Branch: "feature", Depth: 1})
		if err != nil {
			t.Fatal(err)
		}
		if res.TargetDir != "/workspace/repo" || res.Branch != "feature" || len(res.Commit) != 40 || res.URL != base+"/repo.git" {
			t.Errorf("result %+v", res)
		}
		out := mustExec(t, d, "git", "cd /workspace/repo && git rev-list --count HEAD && git branch --show-current && cat g && git rev-parse HEAD")
		if want := "1\nfeature\nthree\n" + res.Commit + "\n"; out.Stdout != want {
			t.Errorf("clone: %q, want %q (%s)", out.Stdout, want, out.Stderr)
		}
	})
	t.Run("default branch, whole history", func(t *testing.T) {
		res, err := sb.GitCheckout(ctx, api.GitCheckoutRequest{URL: base + "/repo.git", TargetDir: "full"})
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
		{"credentials in the URL", api.GitCheckoutRequest{URL: "http://" + gitUser + ":" + gitSecret + "@127.0.0.1:8418/private/repo.git", TargetDir: "/srv/clones/url", Depth: 1}},
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
		{"missing branch", api.GitCheckoutRequest{URL: base + "/repo.git", Branch: "nope", TargetDir: "f1"}, 404, api.CodeGitBranchNotFound},
		{"non-empty target", api.GitCheckoutRequest{URL: base + "/repo.git"}, 409, api.CodeTargetNotEmpty},
		{"target is a file", api.GitCheckoutRequest{URL: base + "/repo.git", TargetDir: "/srv/githttp.py"}, 409, api.CodeTargetNotEmpty},
		{"unreachable", api.GitCheckoutRequest{URL: "http://127.0.0.1:1/repo.git", TargetDir: "f2"}, 502, api.CodeGitUnreachable},
		{"no such repository", api.GitCheckoutRequest{URL: base + "/nope.git", TargetDir: "f3"}, 404, api.CodeGitRepoNotFound},
		{"credentials missing", api.GitCheckoutRequest{URL: base + "/private/repo.git", TargetDir: "f4"}, 403, api.CodeGitAuthFailed},
		{"credentials wrong", api.GitCheckoutRequest{URL: base + "/private/repo.git", Token: "wrong-token", TargetDir: "f5"}, 403, api.CodeGitAuthFailed},
		{"bad URL", api.GitCheckoutRequest{URL: "ftp://example.test/repo.git"}, 400, api.CodeInvalidRequest},
		{"bad depth", api.GitCheckoutRequest{URL: base + "/repo.git", Depth: -1}, 400, api.CodeInvalidRequest},
		{"option as branch", api.GitCheckoutRequest{URL: base + "/repo.git", Branch: "--upload-pack=touch /tmp/x"}, 400, api.CodeInvalidRequest},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sb.GitCheckout(ctx, tc.req)
			var e *client.Error
			if !errors.As(err, &e) || e.Status != tc.status || e.Code != tc.code {
				t.Fatalf("err = %v, want %d %s", err, tc.status, tc.code)
			}
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
	d := StartDaemon(t)
	base := startGitServer(t, d, "gitcli")
	out, errOut, code := d.CLI(nil, "git", "clone", "gitcli", base+"/repo.git", "--branch", "feature", "--depth", "1", "--dir", "cli")
	if code != 0 || !strings.Contains(out, "cloned "+base+"/repo.git into /workspace/cli (feature at ") {
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
	_, errOut, code = d.CLI(nil, "git", "clone", "gitcli", base+"/repo.git", "--branch", "nope", "--dir", "x")
	if code == 0 || !strings.Contains(errOut, api.CodeGitBranchNotFound) {
		t.Errorf("missing branch: %d %q", code, errOut)
	}
	if strings.Contains(d.Logs(), gitSecret) {
		t.Errorf("sbxd logged the git secret")
	}
}
