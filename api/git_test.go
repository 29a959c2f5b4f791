package api

import (
	"strings"
	"testing"
)

func TestGitCheckoutRequestValidate(t *testing.T) {
	tests := []struct {
		name    string
		req     GitCheckoutRequest
		wantErr string
	}{
		{"https", GitCheckoutRequest{URL: "https://github.com/o/r.git", Branch: "feature/x-1", Depth: 1}, ""},
		{"credentials in URL", GitCheckoutRequest{URL: "https://u:p@h/o/r.git"}, ""},
		{"token", GitCheckoutRequest{URL: "https://h/o/r", Username: "oauth2", Token: "t"}, ""},
		{"scp-like", GitCheckoutRequest{URL: "git@github.com:o/r.git"}, ""},
		{"ssh", GitCheckoutRequest{URL: "ssh://git@h:2222/o/r.git"}, ""},
		{"file", GitCheckoutRequest{URL: "file:///srv/r.git", TargetDir: "/tmp/x"}, ""},
		{"empty", GitCheckoutRequest{}, "url is empty"},
		{"option", GitCheckoutRequest{URL: "--upload-pack=x"}, "must not start with '-'"},
		{"space", GitCheckoutRequest{URL: "https://h/o r"}, "spaces"},
		{"scheme", GitCheckoutRequest{URL: "ftp://h/r.git"}, "not supported"},
		{"no host", GitCheckoutRequest{URL: "https:///r.git"}, "has no host"},
		{"token user, no host", GitCheckoutRequest{URL: "https://TOKEN@/r.git"}, "has no host"},
		{"password does not parse", GitCheckoutRequest{URL: "https://u:p@h:port/r.git"}, "does not parse"},
		{"token user does not parse", GitCheckoutRequest{URL: "https://TOKEN%zz@h/r.git"}, "does not parse"},
		{"relative path", GitCheckoutRequest{URL: "some/dir"}, "not a repository URL"},
		{"credentials over ssh", GitCheckoutRequest{URL: "ssh://git@h/r.git", Token: "t"}, "only used with http(s)"},
		{"credentials twice", GitCheckoutRequest{URL: "https://u:p@h/r.git", Token: "t"}, "not both"},
		{"username alone", GitCheckoutRequest{URL: "https://h/r.git", Username: "u"}, "needs a token"},
		{"newline in token", GitCheckoutRequest{URL: "https://h/r.git", Token: "a\nb"}, "control characters"},
		{"branch option", GitCheckoutRequest{URL: "https://h/r.git", Branch: "-b"}, "not a valid branch"},
		{"branch range", GitCheckoutRequest{URL: "https://h/r.git", Branch: "a..b"}, "not a valid branch"},
		{"depth", GitCheckoutRequest{URL: "https://h/r.git", Depth: -1}, "depth must be"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.req.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one saying %q", err, tc.wantErr)
			}
			if err != nil && (strings.Contains(err.Error(), ":p@") || strings.Contains(err.Error(), "TOKEN")) {
				t.Errorf("error shows the credentials: %v", err)
			}
		})
	}
}

func TestGitRepoNameAndRedact(t *testing.T) {
	names := map[string]string{
		"https://github.com/o/repo.git":   "repo",
		"https://github.com/o/repo/":      "repo",
		"https://u:p@h/o/app":             "app",
		"git@github.com:o/tool.git":       "tool",
		"ssh://git@h:22/srv/git/lib.git":  "lib",
		"file:///srv/git/data.git":        "data",
		"https://h/":                      "repo",
		"https://h/o/repo.git?ref=x#frag": "repo",
	}
	for in, want := range names {
		if got := GitRepoName(in); got != want {
			t.Errorf("GitRepoName(%q) = %q, want %q", in, got, want)
		}
	}
	redacted := []struct{ in, want string }{
		{"https://u:secret@h/r.git", "https://u:***@h/r.git"},
		{"https://ghp_TOKEN@h/r.git", "https://***@h/r.git"},
		{"HTTP://ghp_TOKEN@h:8100/r.git?x=a@b", "HTTP://***@h:8100/r.git?x=a@b"},
		{"https://u:p%zz@h/r.git", "https://u:***@h/r.git"}, // does not parse
		{"https://h/o/r.git", "https://h/o/r.git"},
		{"https://h/o@r.git", "https://h/o@r.git"},
		{"ssh://git@h/r.git", "ssh://git@h/r.git"},
		{"git@h:o/r.git", "git@h:o/r.git"},
	}
	for _, tc := range redacted {
		if got := RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
