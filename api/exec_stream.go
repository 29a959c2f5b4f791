package api

// Streaming exec: POST /v1/sandboxes/{id}/exec with
// "Accept: text/event-stream" answers with server-sent events. Each event's
// name is its type and its data line is one JSON object:
//
//	event: start     data: ExecStartEvent      the command runs
//	event: stdout    data: OutputEvent         a chunk of standard output
//	event: stderr    data: OutputEvent         a chunk of standard error
//	event: complete  data: ExecCompleteEvent   the command exited (final)
//	event: error     data: Error               the command's fate is unknown (final)
//
// stdout and stderr events come in the order the agent read them: the real
// order of the writes whenever they are more than the agent's read latency
// apart (tens of microseconds; a command's output lines nearly always are).
// Writes to the two pipes closer together than that, such as a tight loop
// of unbuffered prints, can come out one stream's batch first: two pipes
// carry no common clock, and the only exact alternatives (one socket that
// refuses writes above ~200 KiB, or intercepting every write) would break
// or slow the programs themselves. complete is
// sent only once the command has really exited; when the sandbox or its agent
// dies mid-stream the stream ends with error instead, never with a made-up
// exit code. Lines starting with ':' are keep-alive comments.
const (
	EventStart    = "start"
	EventStdout   = "stdout"
	EventStderr   = "stderr"
	EventComplete = "complete"
	EventError    = "error"
	// EventExit ends a followed process log (ProcessExitEvent).
	EventExit = "exit"
	// EventDropped reports log bytes dropped from a bounded buffer before
	// they could be delivered (DroppedEvent).
	EventDropped = "dropped"
)

// ExecStartEvent is the data of a start event.
type ExecStartEvent struct {
	// Pid is the process running the command: its bash, or the session's
	// shell for a command run in a session.
	Pid int `json:"pid"`
}

// OutputEvent is the data of a stdout or stderr event.
type OutputEvent struct {
	// Data is the chunk as UTF-8 text, or base64 when Base64 is set
	// because the bytes are not valid UTF-8.
	Data   string `json:"data"`
	Base64 bool   `json:"base64,omitempty"`
}

// ExecCompleteEvent is the data of a complete event; its fields mean what
// they mean in ExecResult.
type ExecCompleteEvent struct {
	ExitCode   int   `json:"exitCode"`
	Success    bool  `json:"success"`
	DurationMs int64 `json:"durationMs"`
	TimedOut   bool  `json:"timedOut"`
	OOMKilled  bool  `json:"oomKilled,omitempty"`
}

// DroppedEvent says that Bytes bytes of Stream were dropped from a bounded
// log buffer before this reader saw them.
type DroppedEvent struct {
	Stream string `json:"stream"`
	Bytes  int64  `json:"bytes"`
}
