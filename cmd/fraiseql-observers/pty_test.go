package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal: the master (closed when the test ends) and its
// slave, a terminal for whoever writes to it. After every holder of the slave closed
// it, reading the master ends with an error (EIO).
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pseudo-terminal number: %v", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open the pseudo-terminal's slave: %v", err)
	}
	return master, slave
}

// readAll reads master until every holder of its slave closed it; wait returns what
// it read.
func readAll(master *os.File) (wait func() string) {
	var out bytes.Buffer
	var reading sync.WaitGroup
	reading.Add(1)
	go func() {
		defer reading.Done()
		buf := make([]byte, 4096)
		for {
			k, err := master.Read(buf)
			out.Write(buf[:k])
			if err != nil { // EIO once every holder of the slave closed it
				return
			}
		}
	}()
	return func() string {
		reading.Wait()
		return out.String()
	}
}

// cliOnTerminal runs a command with its stdout on a pseudo-terminal (stderr to a
// buffer) and returns what the terminal received.
func cliOnTerminal(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	master, slave := openPTY(t)
	out := readAll(master)
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), env...)
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = slave, &errb
	err := cmd.Run()
	slave.Close()
	return cliOutcome(t, args, err, out(), errb.String())
}

// TestIsTerminal: a pseudo-terminal is a terminal; /dev/null (a character device too),
// a file and a pipe are not (before, /dev/null was taken for one: a progress bar and
// colour codes went to it).
func TestIsTerminal(t *testing.T) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	file, err := os.Create(t.TempDir() + "/out")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	for name, f := range map[string]*os.File{"/dev/null": null, "a file": file, "a pipe": pw} {
		if isTerminal(f) {
			t.Fatalf("%s taken for a terminal", name)
		}
	}
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	defer master.Close()
	if !isTerminal(master) {
		t.Fatalf("a pseudo-terminal not taken for a terminal")
	}
}
