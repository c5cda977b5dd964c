package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/engine"
)

// TestParseSize: sizes in binary and decimal units, fractions, case and
// spaces; what is not a size is refused with the reason.
func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		err  string
	}{
		{"512MiB", 512 << 20, ""},
		{"2GiB", 2 << 30, ""},
		{"1.5GiB", 3 << 29, ""},
		{"1TiB", 1 << 40, ""},
		{"64KiB", 64 << 10, ""},
		{"512mib", 512 << 20, ""},
		{" 2 GiB ", 2 << 30, ""},
		{"2GB", 2e9, ""},
		{"500MB", 500e6, ""},
		{"3kB", 3000, ""},
		{"268435456", 268435456, ""},
		{"268435456B", 268435456, ""},
		{"", 0, "not a size"},
		{"GiB", 0, "not a size"},
		{"lots", 0, "not a size"},
		{"-1GiB", 0, "not a size"},
		{"1e9", 0, "not a size"},
		{"0x10MiB", 0, "not a size"},
		{"1.5", 0, "not a size"}, // bytes are whole
		{"2 GiB extra", 0, "not a size"},
		{"NaNGiB", 0, "not a size"},
		{"1.2.3MiB", 0, "not a size"},
		{"99999999999TiB", 0, "out of range"},
	} {
		got, err := parseSize(tt.in)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("parseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("parseSize(%q) = %d, %v; want an error with %q", tt.in, got, err, tt.err)
		}
	}
	for _, b := range []int64{256 << 20, 3 << 30, 1 << 40} {
		if got, err := parseSize(formatSize(b)); err != nil || got != b {
			t.Errorf("parseSize(formatSize(%d) = %q) = %d, %v", b, formatSize(b), got, err)
		}
	}
}

// TestDefaultMemoryLimit: $GOMEMLIMIT wins, then 80 % of a cgroup limit
// (when it is below the physical memory), then half the physical memory;
// never below the engine's minimum.
func TestDefaultMemoryLimit(t *testing.T) {
	const gib = 1 << 30
	for _, tt := range []struct {
		name string
		m    machineMemory
		want int64
		from string
	}{
		{"GOMEMLIMIT", machineMemory{GoMemLimit: 3 * gib, Cgroup: 8 * gib, Physical: 16 * gib}, 3 * gib, "$GOMEMLIMIT"},
		{"cgroup", machineMemory{Cgroup: 10 * gib, Physical: 64 * gib}, 8 * gib, "cgroup"},
		{"cgroup above the machine", machineMemory{Cgroup: 128 * gib, Physical: 16 * gib}, 8 * gib, "physical"},
		{"cgroup, machine unknown", machineMemory{Cgroup: 5 * gib}, 4 * gib, "cgroup"},
		{"physical", machineMemory{Physical: 24 * gib}, 12 * gib, "physical"},
		{"tiny container", machineMemory{Cgroup: 200 << 20, Physical: 16 * gib}, engine.MinMemoryLimit, "minimum"},
		{"nothing known", machineMemory{}, gib, "unknown"},
	} {
		got, from := defaultMemoryLimit(tt.m)
		if got != tt.want || !strings.Contains(from, tt.from) {
			t.Errorf("%s: %d (%s), want %d (%s)", tt.name, got, from, tt.want, tt.from)
		}
	}
	if v, from, err := memoryLimit("", machineMemory{Physical: 4 << 30}); err != nil || v != 2<<30 || !strings.Contains(from, "physical") {
		t.Errorf("no flag: %d %q %v", v, from, err)
	}
	if v, from, err := memoryLimit("1GiB", machineMemory{Physical: 4 << 30}); err != nil || v != 1<<30 || from != "--memory-limit" {
		t.Errorf("flag 1GiB: %d %q %v", v, from, err)
	}
}

// TestCgroupLimit reads cgroup v2 and v1 files laid out as on a host and
// in a container (the process's own cgroup path, or the mount's root).
func TestCgroupLimit(t *testing.T) {
	write := func(t *testing.T, path, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name  string
		self  string
		files map[string]string
		want  int64
	}{
		{"v2, own cgroup", "0::/system.slice/aurum.service\n",
			map[string]string{"system.slice/aurum.service/memory.max": "2147483648\n", "memory.max": "max\n"}, 2 << 30},
		{"v2, unlimited", "0::/user.slice\n", map[string]string{"user.slice/memory.max": "max\n"}, 0},
		{"v2, container root", "0::/\n", map[string]string{"memory.max": "1073741824\n"}, 1 << 30},
		{"v1, own cgroup", "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n",
			map[string]string{"memory/docker/abc/memory.limit_in_bytes": "536870912\n"}, 512 << 20},
		{"v1, no limit", "4:memory:/process_api/x\n",
			map[string]string{"memory/process_api/x/memory.limit_in_bytes": "9223372036854771712\n"}, 0},
		{"v1, container root", "11:memory:/\n", map[string]string{"memory/memory.limit_in_bytes": "805306368\n"}, 768 << 20},
		{"no cgroup files", "0::/\n", nil, 0},
		{"garbage", "0::/\n", map[string]string{"memory.max": "lots\n"}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for p, data := range tt.files {
				write(t, filepath.Join(root, "cg", p), data)
			}
			self := filepath.Join(root, "self")
			write(t, self, tt.self)
			if got := cgroupLimit(filepath.Join(root, "cg"), self); got != tt.want {
				t.Errorf("cgroupLimit = %d, want %d", got, tt.want)
			}
		})
	}
	if m := memTotal([]byte("MemTotal:       24684032 kB\nMemFree:        20000000 kB\n")); m != 24684032<<10 {
		t.Errorf("memTotal = %d", m)
	}
	if m := memTotal([]byte("MemFree: 1 kB\n")); m != 0 {
		t.Errorf("memTotal without MemTotal = %d", m)
	}
}
