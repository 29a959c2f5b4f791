package main

import "strings"

// commandLine turns the arguments after -- into the bash command a
// sandbox runs. One argument is taken as a shell command line as it is
// (`sbx exec ID -- 'ls | wc -l'`); several are an argument vector, each
// quoted so that bash sees exactly what the local shell passed
// (`sbx exec ID -- python3 -c 'print(2+2)'`), as docker exec does.
func commandLine(args []string) string {
	if len(args) == 1 {
		return args[0]
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	return strings.Join(quoted, " ")
}

// shellQuote returns s as one bash word with the same value.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
