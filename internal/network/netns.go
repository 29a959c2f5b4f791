package network

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// currentNetns opens the network namespace of the calling thread. Nothing
// in sbx leaves a thread in another namespace once it is unlocked (see
// inNetns), so this is the process's own namespace.
func currentNetns() (*os.File, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return os.Open("/proc/thread-self/ns/net")
}

// inNetns runs fn on an OS thread that has joined the network namespace of
// target, a namespace file descriptor or a pidfd of a process in it.
// Netlink sockets, sockets and /proc/sys/net files that fn opens belong to
// that namespace. Afterwards the thread returns to home; if it cannot, it
// is never reused (a goroutine that exits locked takes its thread along).
func inNetns(target, home int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("join network namespace: %w", err)
			return
		}
		err := fn()
		if rerr := unix.Setns(home, unix.CLONE_NEWNET); rerr == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// writeSysctl writes a /proc/sys value of the calling thread's namespaces.
func writeSysctl(path, value string) error {
	f, err := os.OpenFile("/proc/sys/"+path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", path, value, err)
	}
	return nil
}
