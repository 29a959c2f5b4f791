package api

// PTY terminals: GET /v1/sandboxes/{id}/pty?cols=&rows=&session= upgrades
// to a WebSocket. Binary frames carry terminal bytes both ways. Text frames
// carry one JSON control message each, told apart by "type":
//
//	client → server  {"type":"resize","cols":120,"rows":40}
//	server → client  {"type":"ready","pid":42,"session":"default","cols":120,"rows":40}
//	server → client  {"type":"exit","code":0}            the shell ended; the socket closes
//	server → client  {"type":"error","code":"...","message":"..."}
//
// A terminal belongs to a session (default "default") and outlives its
// WebSocket: connecting again to the same session attaches to the same
// terminal and first receives its recent output. Several clients may attach
// at once; all see the output and all may type.
const (
	PTYResize = "resize"
	PTYReady  = "ready"
	PTYExit   = "exit"
	PTYError  = "error"
)

// CodeUpgradeRequired answers a PTY request that is not a WebSocket
// handshake (HTTP 426).
const CodeUpgradeRequired = "UPGRADE_REQUIRED"

// PTYMessage is a control message of any type; fields not used by its
// type are zero. For type "exit", ExitCode travels as "code"; for type
// "error", Code and Message are an Error.
type PTYMessage struct {
	Type    string `json:"type"`
	Cols    int    `json:"cols,omitempty"`
	Rows    int    `json:"rows,omitempty"`
	Pid     int    `json:"pid,omitempty"`
	Session string `json:"session,omitempty"`
	// Code is the exit code (a number) of an exit message or the error
	// code (a string) of an error message.
	Code    any    `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}
