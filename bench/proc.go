package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat (USER_HZ,
// 100 on every Linux this runs on).
const clockTick = 10 * time.Millisecond

// procSample is what /proc tells of one process at one time.
type procSample struct {
	CPU     time.Duration // utime + stime since the process started
	HWM     int64         // VmHWM: peak resident set, bytes
	RSS     int64         // VmRSS, bytes
	RSSAnon int64         // RssAnon: private resident memory, bytes (shared buffers excluded)
}

// parseStat reads utime+stime from the text of /proc/<pid>/stat. The
// command name (field 2) may hold spaces and parentheses, so fields are
// counted from its last ')'.
func parseStat(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// After the name: state(3) ppid(4) ... utime(14) stime(15); f[0] is field 3.
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the name, want >= 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: utime/stime %q: %w", s, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// parseStatus reads VmHWM, VmRSS and RssAnon (kB) from the text of
// /proc/<pid>/status; a missing line (a kernel thread, a zombie) is 0.
func parseStatus(b []byte) (hwm, rss, anon int64, err error) {
	for line := range strings.SplitSeq(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch key {
		case "VmHWM":
			dst = &hwm
		case "VmRSS":
			dst = &rss
		case "RssAnon":
			dst = &anon
		default:
			continue
		}
		num, unit, _ := strings.Cut(strings.TrimSpace(val), " ")
		n, perr := strconv.ParseInt(num, 10, 64)
		if perr != nil || unit != "kB" {
			return 0, 0, 0, fmt.Errorf("status: %s: %q", key, val)
		}
		*dst = n * 1024
	}
	return hwm, rss, anon, nil
}

// readProc samples process pid from /proc.
func readProc(pid int) (procSample, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procSample{}, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procSample{}, err
	}
	var s procSample
	if s.CPU, err = parseStat(stat); err != nil {
		return procSample{}, err
	}
	if s.HWM, s.RSS, s.RSSAnon, err = parseStatus(status); err != nil {
		return procSample{}, err
	}
	return s, nil
}
