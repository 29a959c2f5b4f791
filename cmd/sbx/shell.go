package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/sbx-dev/sbx/client"
)

func shellCmd(g *globals) *cobra.Command {
	var session string
	cmd := &cobra.Command{
		Use:   "shell ID",
		Short: "Open an interactive terminal in a sandbox",
		Long: `Open an interactive bash on a terminal in sandbox ID (created on first use),
as ssh would: your terminal is put in raw mode, resizes follow your window,
and sbx shell exits with the shell's exit code.

The terminal belongs to the session (default "default") and keeps running if
you disconnect: running sbx shell again attaches to it and shows its recent
output. Several people may attach to one terminal at once.`,
		Example: `  sbx shell demo
  sbx shell demo --session build`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			in, out := int(os.Stdin.Fd()), int(os.Stdout.Fd())
			opts := client.TerminalOptions{Session: session}
			if ws, err := unix.IoctlGetWinsize(out, unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
				opts.Cols, opts.Rows = int(ws.Col), int(ws.Row)
			}
			t, err := c.Sandbox(args[0]).OpenTerminal(cmd.Context(), opts)
			if err != nil {
				return err
			}
			defer t.Close()
			if restore, err := makeRaw(in); err == nil {
				defer restore()
			}
			winch := make(chan os.Signal, 1)
			signal.Notify(winch, syscall.SIGWINCH)
			defer signal.Stop(winch)
			go func() {
				for range winch {
					if ws, err := unix.IoctlGetWinsize(out, unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
						_ = t.Resize(int(ws.Col), int(ws.Row))
					}
				}
			}()
			// Input ends with the shell; end-of-file on stdin does not end
			// the terminal.
			go func() { _, _ = io.Copy(t, os.Stdin) }()
			_, err = io.Copy(os.Stdout, t)
			if code, ok := t.ExitCode(); ok {
				if code != 0 {
					return exitError{code: code}
				}
				return nil
			}
			if err == nil {
				err = errors.New("connection closed")
			}
			return fmt.Errorf("terminal: %w (it keeps running; run sbx shell %s again to attach)", err, args[0])
		},
	}
	cmd.Flags().StringVarP(&session, "session", "s", "", "session whose terminal to open (default: default)")
	return cmd
}

// makeRaw puts the terminal on fd in raw mode, as cfmakeraw(3) does, and
// returns a function that restores it. It fails if fd is not a terminal.
func makeRaw(fd int) (func(), error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	t := *old
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
		return nil, err
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}
