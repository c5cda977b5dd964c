package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/aurumcdp/aurum/engine"
)

// sizeUnits are the units parseSize accepts (case-insensitive): binary
// (KiB, MiB, GiB, TiB, as GOMEMLIMIT spells them) and decimal (KB, MB,
// GB, TB).
var sizeUnits = []struct {
	name string
	mult float64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"b", 1},
}

// parseSize reads a memory size: a number (a fraction allowed) and a unit,
// e.g. "512MiB", "1.5GiB", "2GB"; a bare whole number is bytes.
func parseSize(s string) (int64, error) {
	bad := fmt.Errorf("%q is not a size: want a number and a unit, e.g. 512MiB or 2GiB", s)
	t := strings.TrimSpace(s)
	lower := strings.ToLower(t)
	num, mult, unit := t, 1.0, false
	for _, u := range sizeUnits {
		if strings.HasSuffix(lower, u.name) {
			num, mult, unit = strings.TrimSpace(t[:len(t)-len(u.name)]), u.mult, true
			break
		}
	}
	notDigit := func(r rune) bool { return (r < '0' || r > '9') && r != '.' }
	if num == "" || strings.IndexFunc(num, notDigit) >= 0 || (!unit && strings.Contains(num, ".")) {
		return 0, bad
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, bad
	}
	if b := v * mult; b < math.MaxInt64 {
		return int64(b), nil
	}
	return 0, fmt.Errorf("%q is out of range", s)
}

// formatSize prints a size in binary units ("512MiB", "2GiB", "1.50GiB").
func formatSize(b int64) string {
	switch {
	case b >= 1<<30 && b%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", b>>30)
	case b >= 1<<30:
		return fmt.Sprintf("%.2fGiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%dMiB", b>>20)
	}
	return fmt.Sprintf("%dB", b)
}

// machineMemory is what decides the default memory limit.
type machineMemory struct {
	GoMemLimit int64 // the Go runtime's limit from $GOMEMLIMIT (0: none)
	Cgroup     int64 // the cgroup's memory limit (0: none)
	Physical   int64 // MemTotal (0: unknown)
}

// Shares of the machine the default limit takes.
const (
	cgroupShare   = 0.8 // of a cgroup (container) limit: the rest for the kernel's page cache and what is not counted
	physicalShare = 0.5 // of the physical memory when no cgroup limits it
)

// defaultMemoryLimit is --memory-limit when none is given: $GOMEMLIMIT
// if set (the operator's own choice), else 80 % of the cgroup's memory
// limit, else half the physical memory, at least engine.MinMemoryLimit;
// and where it came from, for the log.
func defaultMemoryLimit(m machineMemory) (int64, string) {
	var v int64
	var from string
	switch {
	case m.GoMemLimit > 0:
		v, from = m.GoMemLimit, "$GOMEMLIMIT"
	case m.Cgroup > 0 && (m.Physical == 0 || m.Cgroup < m.Physical):
		v, from = int64(float64(m.Cgroup)*cgroupShare), "80% of the cgroup memory limit"
	case m.Physical > 0:
		v, from = int64(float64(m.Physical)*physicalShare), "half the physical memory"
	default:
		return 1 << 30, "1GiB (the machine's memory is unknown)"
	}
	if v < engine.MinMemoryLimit {
		return engine.MinMemoryLimit, from + ", raised to the minimum"
	}
	return v, from
}

// readMachineMemory reads the machine's memory: $GOMEMLIMIT (through the
// runtime, which parsed it), the cgroup limit (v2 memory.max, else v1
// memory.limit_in_bytes, of this process's cgroup or the mount's root)
// and MemTotal from /proc/meminfo. What cannot be read is 0.
func readMachineMemory() machineMemory {
	var m machineMemory
	if v := debug.SetMemoryLimit(-1); v != math.MaxInt64 {
		m.GoMemLimit = v
	}
	m.Cgroup = cgroupLimit("/sys/fs/cgroup", "/proc/self/cgroup")
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.Physical = memTotal(data)
	}
	return m
}

// cgroupLimit is the memory limit of this process's cgroup under root
// (the cgroup file system's mount), from the membership file self (0:
// none or unknown).
func cgroupLimit(root, self string) int64 {
	var v1, v2 string // this process's cgroup paths
	if data, err := os.ReadFile(self); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() { // hierarchy-ID:controllers:path
			parts := strings.SplitN(sc.Text(), ":", 3)
			if len(parts) != 3 {
				continue
			}
			switch {
			case parts[0] == "0" && parts[1] == "":
				v2 = parts[2]
			case strings.Contains(","+parts[1]+",", ",memory,"):
				v1 = parts[2]
			}
		}
	}
	var candidates []string
	if v2 != "" {
		candidates = append(candidates, filepath.Join(root, v2, "memory.max"))
	}
	candidates = append(candidates, filepath.Join(root, "memory.max"))
	if v1 != "" {
		candidates = append(candidates, filepath.Join(root, "memory", v1, "memory.limit_in_bytes"))
	}
	candidates = append(candidates, filepath.Join(root, "memory", "memory.limit_in_bytes"))
	for _, p := range candidates {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(data))
		if s == "max" {
			return 0
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v <= 0 || v >= 1<<62 { // v1's "no limit" is a huge number
			return 0
		}
		return v
	}
	return 0
}

// memTotal reads MemTotal (bytes) from /proc/meminfo's contents (0: absent).
func memTotal(meminfo []byte) int64 {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// memoryLimit resolves --memory-limit: the flag's value, or the machine's
// default when it is empty; an error names the flag.
func memoryLimit(flag string, m machineMemory) (limit int64, from string, err error) {
	if strings.TrimSpace(flag) == "" {
		v, from := defaultMemoryLimit(m)
		return v, from, nil
	}
	v, err := parseSize(flag)
	if err != nil {
		return 0, "", fmt.Errorf("--memory-limit: %w", err)
	}
	if v < engine.MinMemoryLimit {
		return 0, "", fmt.Errorf("--memory-limit: at least %s, got %s", formatSize(engine.MinMemoryLimit), flag)
	}
	return v, "--memory-limit", nil
}
