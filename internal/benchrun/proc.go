package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of the CPU times in /proc/<pid>/stat (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// statFields returns the fields of /proc/<pid>/stat after the command name: index
// 0 is the state (field 3 of proc(5)), so field n is at index n-3.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return nil, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 15 {
		return nil, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return f, nil
}

func ticks(f []string, fields ...int) time.Duration {
	var n int64
	for _, i := range fields {
		v, _ := strconv.ParseInt(f[i-3], 10, 64)
		n += v
	}
	return time.Duration(n) * clockTick
}

// procUsage returns the user + system CPU time a running process has used and its
// peak resident set (VmHWM, KiB).
func procUsage(pid int) (time.Duration, int64, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, 0, err
	}
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	var hwm int64
	for _, l := range strings.Split(string(s), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			hwm, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return ticks(f, 14, 15), hwm, nil
}

// treeCPU returns the CPU time used so far by the PostgreSQL server of dataDir: its
// postmaster, the children it has reaped (cutime, cstime) and those alive now. A
// child that exits between the two reads is missed or counted twice; backends of a
// benchmark live for the whole measurement.
func treeCPU(dataDir string) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pm, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0, fmt.Errorf("postmaster.pid: %w", err)
	}
	f, err := statFields(pm)
	if err != nil {
		return 0, err
	}
	total := ticks(f, 14, 15, 16, 17)
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		f, err := statFields(pid)
		if err != nil || f[1] != strconv.Itoa(pm) { // field 4: ppid
			continue // gone meanwhile, or not a child of the postmaster
		}
		total += ticks(f, 14, 15)
	}
	return total, nil
}

func nproc() int { return runtime.NumCPU() }
