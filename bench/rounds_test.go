package bench

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// fig is one timed run: how many events it carried, how long it took and
// how much CPU the measured process used (0 where unknown), with the
// machine's load when it started (issue #15: the machine is shared, so
// each figure carries its load).
type fig struct {
	Events  int     `json:"events"`
	Seconds float64 `json:"seconds"`
	CPUns   int64   `json:"cpu_ns,omitempty"`
	Load    float64 `json:"load"` // 1-minute load average at the start
}

// rate is events per second (0 for an empty run).
func (f fig) rate() float64 {
	if f.Seconds <= 0 {
		return 0
	}
	return float64(f.Events) / f.Seconds
}

// cpuUs is the process CPU per event in µs (0 when unknown).
func (f fig) cpuUs() float64 {
	if f.Events <= 0 || f.CPUns <= 0 {
		return 0
	}
	return float64(f.CPUns) / float64(f.Events) / 1000
}

// roundOrder is the order in which round r of n runs its steps: forward
// in the last round and in every second round before it, reversed in the
// others, so that over the rounds each step runs as often early as late
// (the machine drifts), and the last round runs the baseline (step 0)
// first: the last measurement's process may then live on into the later
// phases of a size without idling beside a baseline.
func roundOrder(r, n, steps int) []int {
	order := make([]int, steps)
	for i := range order {
		order[i] = i
	}
	if (n-1-r)%2 == 1 {
		slices.Reverse(order)
	}
	return order
}

// runRounds runs n rounds of the steps (step 0 is the baseline), in
// roundOrder, and returns each round's figures by step: out[r][i] is step
// i of round r.
func runRounds(n int, steps ...func(r int) (fig, error)) ([][]fig, error) {
	out := make([][]fig, n)
	for r := range n {
		out[r] = make([]fig, len(steps))
		for _, i := range roundOrder(r, n, len(steps)) {
			settle()
			load := loadAverage()
			f, err := steps[i](r)
			if err != nil {
				return out, fmt.Errorf("round %d, step %d: %w", r+1, i, err)
			}
			f.Load = load
			out[r][i] = f
		}
	}
	return out, nil
}

// settle runs before each step of a round, so that what the previous step
// left behind is not paid by the next: its dirty pages are written out and
// this process's garbage is collected (the ingest steps run in this
// process).
func settle() {
	flushDirty()
	runtime.GC()
}

// column is step i of every round.
func column(rounds [][]fig, i int) []fig {
	out := make([]fig, len(rounds))
	for r := range rounds {
		out[r] = rounds[r][i]
	}
	return out
}

// medianRate is the median events/s of figs (0 for none).
func medianRate(figs []fig) float64 {
	return medianOf(figs, fig.rate)
}

// medianCPU is the median process CPU per event (µs) of figs.
func medianCPU(figs []fig) float64 {
	return medianOf(figs, fig.cpuUs)
}

func medianOf(figs []fig, v func(fig) float64) float64 {
	if len(figs) == 0 {
		return 0
	}
	xs := make([]float64, len(figs))
	for i, f := range figs {
		xs[i] = v(f)
	}
	slices.Sort(xs)
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[len(xs)/2]
}

// loadAverage is the machine's 1-minute load average (0 where unknown).
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	return parseLoadAverage(string(data))
}

func parseLoadAverage(s string) float64 {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	return v
}
