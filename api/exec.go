package api

// ExitCodeTimedOut is the ExecResult.ExitCode of a command whose TimeoutMs
// expired: its whole process group was killed with SIGKILL and TimedOut is
// true. It is the code coreutils timeout(1) uses, so scripts that already
// test for 124 keep working. A command that exits by itself reports its exit
// status, or 128 plus the signal number when a signal ended it.
const ExitCodeTimedOut = 124
