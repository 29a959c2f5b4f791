package api

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Languages of code contexts.
const (
	LanguagePython     = "python"
	LanguageJavaScript = "javascript"
	LanguageTypeScript = "typescript"
)

// Languages lists the languages code contexts support.
var Languages = []string{LanguagePython, LanguageJavaScript, LanguageTypeScript}

// Error codes of the code interpreter.
const (
	// CodeInterpreterNotAvailable: the sandbox's image lacks what the
	// language needs (see CreateCodeContextRequest).
	CodeInterpreterNotAvailable = "INTERPRETER_NOT_AVAILABLE"
	// CodeContextNotFound: no code context with that id in the sandbox.
	CodeContextNotFound = "CONTEXT_NOT_FOUND"
)

// CreateCodeContextRequest is the body of POST /v1/sandboxes/{id}/contexts.
//
// A context is one long-lived interpreter process: variables, imports and
// functions defined by one run are there for the next, and never visible in
// another context. Contexts live in the sandbox's memory and end when it
// stops.
//
// A language is available when the image has what it needs: python needs
// `python3` on $PATH that can import IPython (the "python" image has it,
// with NumPy, pandas and Matplotlib); javascript needs `node` (18 or later)
// on $PATH; typescript needs node and the `typescript` package where node's
// require() finds it. Otherwise creation fails with
// INTERPRETER_NOT_AVAILABLE.
type CreateCodeContextRequest struct {
	// Language is python, javascript or typescript.
	Language string `json:"language"`
	// Cwd is the working directory, relative to /workspace unless
	// absolute; default /workspace.
	Cwd string `json:"cwd,omitempty"`
	// Env adds environment variables for the context's interpreter and
	// the processes it starts, on top of the sandbox's environment as it
	// is when the context is created.
	Env map[string]string `json:"env,omitempty"`
}

// Validate checks what can be checked without the sandbox.
func (r *CreateCodeContextRequest) Validate() error {
	if err := validateLanguage(r.Language, false); err != nil {
		return err
	}
	return ValidateEnv(r.Env)
}

// CodeContext describes a code context.
type CodeContext struct {
	ID        string    `json:"id"`
	Language  string    `json:"language"`
	Cwd       string    `json:"cwd"`
	CreatedAt time.Time `json:"createdAt"`
}

// CodeContextList is the body of GET /v1/sandboxes/{id}/contexts.
type CodeContextList struct {
	Contexts []CodeContext `json:"contexts"`
}

// RunCodeRequest is the body of POST /v1/sandboxes/{id}/code.
//
// With Context the code runs in that context. Without it, it runs in the
// language's default context (id "default-<language>"), created on first
// use and stateful like any other; Language then picks it (default
// python). Runs in one context happen one at a time, in arrival order.
type RunCodeRequest struct {
	Code     string `json:"code"`
	Context  string `json:"context,omitempty"`
	Language string `json:"language,omitempty"`
	// TimeoutMs interrupts the run after this many milliseconds (SIGINT:
	// KeyboardInterrupt in Python) and reports TimedOut; the context stays
	// usable. Code that ignores the interrupt has its interpreter killed,
	// and the next run reports StateLost. 0 means no timeout.
	TimeoutMs int64 `json:"timeoutMs,omitempty"`
}

// Validate checks what can be checked without the sandbox.
func (r *RunCodeRequest) Validate() error {
	if r.Code == "" {
		return fmt.Errorf("code is empty; pass the source to run")
	}
	if strings.IndexByte(r.Code, 0) >= 0 {
		return fmt.Errorf("code contains a NUL byte")
	}
	if r.TimeoutMs < 0 {
		return fmt.Errorf("timeoutMs is %d; use a positive number of milliseconds or 0 for no timeout", r.TimeoutMs)
	}
	if r.Context != "" {
		if err := ValidateContextID(r.Context); err != nil {
			return err
		}
	}
	return validateLanguage(r.Language, true)
}

// ValidateContextID checks the form of a context id: 1-64 of [A-Za-z0-9_-].
func ValidateContextID(id string) error {
	ok := id != "" && len(id) <= 64
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
	}
	if !ok {
		return fmt.Errorf("context id %q is not valid: use the id returned when the context was created", id)
	}
	return nil
}

func validateLanguage(lang string, emptyOK bool) error {
	if lang == "" && emptyOK {
		return nil
	}
	for _, l := range Languages {
		if lang == l {
			return nil
		}
	}
	return fmt.Errorf("language %q is not supported; use one of %s", lang, strings.Join(Languages, ", "))
}

// CodeResult is one rich output of a run: the value of the last expression
// (IsMainResult) or one display() call. It carries every representation
// the value offers; images are base64.
type CodeResult struct {
	Text       string `json:"text,omitempty"`
	HTML       string `json:"html,omitempty"`
	Markdown   string `json:"markdown,omitempty"`
	LaTeX      string `json:"latex,omitempty"`
	SVG        string `json:"svg,omitempty"`
	PNG        string `json:"png,omitempty"`
	JPEG       string `json:"jpeg,omitempty"`
	JavaScript string `json:"javascript,omitempty"`
	// JSON is the application/json representation, as JSON.
	JSON json.RawMessage `json:"json,omitempty"`
	// IsMainResult marks the value of the last expression.
	IsMainResult bool `json:"isMainResult,omitempty"`
}

// Formats lists the representations r carries, by field name ("text",
// "html", "png", …).
func (r *CodeResult) Formats() []string {
	var f []string
	for _, p := range []struct {
		name string
		set  bool
	}{
		{"text", r.Text != ""}, {"html", r.HTML != ""}, {"markdown", r.Markdown != ""},
		{"latex", r.LaTeX != ""}, {"svg", r.SVG != ""}, {"png", r.PNG != ""},
		{"jpeg", r.JPEG != ""}, {"javascript", r.JavaScript != ""}, {"json", len(r.JSON) > 0},
	} {
		if p.set {
			f = append(f, p.name)
		}
	}
	return f
}

// PNGBytes decodes the PNG representation; nil if there is none.
func (r *CodeResult) PNGBytes() ([]byte, error) { return decodeImage("png", r.PNG) }

// JPEGBytes decodes the JPEG representation; nil if there is none.
func (r *CodeResult) JPEGBytes() ([]byte, error) { return decodeImage("jpeg", r.JPEG) }

func decodeImage(format, s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("decoding %s result: %w", format, err)
	}
	return b, nil
}

// CodeLogs is what a run wrote to standard output and error, in the chunks
// it was written.
type CodeLogs struct {
	Stdout []string `json:"stdout"`
	Stderr []string `json:"stderr"`
	// Truncated says output beyond the agent's cap was dropped.
	Truncated bool `json:"truncated,omitempty"`
}

// CodeError is an error raised by the code: an exception in Python, a
// thrown value in JavaScript, a syntax error, or the interpreter's crash
// (Name "InterpreterCrashed").
type CodeError struct {
	Name      string   `json:"name"`
	Message   string   `json:"message"`
	Traceback []string `json:"traceback"`
}

// ErrorNameInterpreterCrashed is CodeError.Name when the interpreter
// process died during the run; the context starts a fresh one on the next
// run, which reports StateLost.
const ErrorNameInterpreterCrashed = "InterpreterCrashed"

// RunCodeResult is the response of a non-streaming POST .../code. An error
// in the code is a result (Error set), not an HTTP error.
type RunCodeResult struct {
	Results []CodeResult `json:"results"`
	Logs    CodeLogs     `json:"logs"`
	Error   *CodeError   `json:"error,omitempty"`
	// The fields below are those of CodeComplete.
	Context        string `json:"context"`
	ExecutionCount int    `json:"executionCount"`
	StateLost      bool   `json:"stateLost,omitempty"`
	TimedOut       bool   `json:"timedOut,omitempty"`
	DurationMs     int64  `json:"durationMs"`
}

// Complete returns the CodeComplete part of r.
func (r *RunCodeResult) Complete() CodeComplete {
	return CodeComplete{Context: r.Context, ExecutionCount: r.ExecutionCount, StateLost: r.StateLost, TimedOut: r.TimedOut, DurationMs: r.DurationMs}
}

// CodeComplete ends a run: it is the `complete` event of a streaming run
// and part of RunCodeResult.
type CodeComplete struct {
	// Context is the id of the context the code ran in.
	Context string `json:"context"`
	// ExecutionCount numbers the runs of the context's interpreter,
	// from 1; it starts again when the interpreter is replaced.
	ExecutionCount int `json:"executionCount"`
	// StateLost says the context's interpreter had died (crash, kill,
	// out of memory) since the previous run and a fresh one ran this
	// code: earlier variables, imports and functions are gone.
	StateLost bool `json:"stateLost,omitempty"`
	// TimedOut says TimeoutMs expired and the run was interrupted.
	TimedOut   bool  `json:"timedOut,omitempty"`
	DurationMs int64 `json:"durationMs"`
}

// CodeOutput is the data of the `stdout` and `stderr` events.
type CodeOutput struct {
	Text string `json:"text"`
}

// Events of a streaming run (POST .../code with Accept: text/event-stream),
// in the order they happen: any number of stdout, stderr and result events,
// at most one error event with a CodeError, then complete. A failure of the
// sandbox itself ends the stream with an error event carrying an Error
// ({code, message}) instead, and no complete.
const (
	CodeEventStdout   = "stdout"
	CodeEventStderr   = "stderr"
	CodeEventResult   = "result"
	CodeEventError    = "error"
	CodeEventComplete = "complete"
)
