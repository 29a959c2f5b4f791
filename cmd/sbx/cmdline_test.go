package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestCommandLine(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"ls -la | head"}, "ls -la | head"},
		{[]string{"python3", "-c", "print(2+2)"}, "python3 -c 'print(2+2)'"},
		{[]string{"echo", "it's", ""}, `echo 'it'\''s' ''`},
		{[]string{"echo", "$HOME", "a  b", "*"}, `echo '$HOME' 'a  b' '*'`},
		{[]string{"ls", "/tmp/x.txt", "--color=auto"}, "ls /tmp/x.txt --color=auto"},
	}
	for _, tc := range tests {
		if got := commandLine(tc.args); got != tc.want {
			t.Errorf("commandLine(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

// TestCommandLineRoundTrip has bash split the quoted line back into the
// original words, whatever they hold.
func TestCommandLineRoundTrip(t *testing.T) {
	words := []string{"a b", "'", `"`, "\\", "$(id)", "`id`", "!x", "\n", "tab\there", "", "ü", "~", "#c", ";", "&&", "a'b\"c"}
	line := commandLine(append([]string{"printf", "%s\\0"}, words...))
	out, err := exec.Command("bash", "-c", line).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if !slices.Equal(got, words) {
		t.Errorf("bash -c %q split into %q, want %q", line, got, words)
	}
}
