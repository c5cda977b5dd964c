// Command predict-eval prints the reference results of the prediction
// models of issue #12 (docs/predictions.md, "Reference results: the
// command"): the propensity AUC on online_shoppers_intention and the
// recommendation hit rates at 10 against popularity, read from the shared
// data directory (default ../shared/data, next to the clone).
//
//	go run ./cmd/predict-eval [-data DIR]
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	data := flag.String("data", "../shared/data", "directory holding online_shoppers_intention/ and otto_sample/")
	flag.Parse()
	if err := run(os.Stdout, *data); err != nil {
		fmt.Fprintln(os.Stderr, "predict-eval:", err)
		os.Exit(1)
	}
}

func run(w io.Writer, dir string) error {
	r, err := evaluate(dir)
	if err != nil {
		return err
	}
	r.print(w)
	return nil
}

// report is everything the command prints.
type report struct {
	Propensity *propensityResult
	// Otto, Workload, StrongWorkload and Planted are the recommendation
	// evaluations (StrongWorkload: the workload with strongPreference).
	Otto, Workload, StrongWorkload, Planted *recommendResult
	// WorkloadPropensity and Segments run on the synthetic store.
	WorkloadPropensity *workloadPropensity
	Segments           *segmentResult
}

func evaluate(dir string) (*report, error) {
	var r report
	s, err := readShoppersFile(dir)
	if err != nil {
		return nil, err
	}
	if r.Propensity, err = evalPropensity(s, splitSeed, boostedOptions); err != nil {
		return nil, err
	}
	if r.Otto, err = evalOtto(dir); err != nil {
		return nil, err
	}
	wl, err := runWorkload(workloadConfig)
	if err != nil {
		return nil, err
	}
	if r.Workload, err = evalWorkload(wl, workloadConfig); err != nil {
		return nil, err
	}
	strong := workloadConfig
	strong.Preference = strongPreference
	swl, err := runWorkload(strong)
	if err != nil {
		return nil, err
	}
	if r.StrongWorkload, err = evalWorkload(swl, strong); err != nil {
		return nil, err
	}
	if r.WorkloadPropensity, err = evalWorkloadPropensity(wl); err != nil {
		return nil, err
	}
	if r.Segments, err = evalSegments(wl); err != nil {
		return nil, err
	}
	if r.Planted, err = evalPlanted(); err != nil {
		return nil, err
	}
	return &r, nil
}

func (r *report) print(w io.Writer) {
	r.Propensity.print(w)
	fmt.Fprintln(w)
	printRecommend(w, []*recommendResult{r.Otto, r.Workload, r.StrongWorkload, r.Planted})
	fmt.Fprintln(w)
	r.WorkloadPropensity.print(w)
	fmt.Fprintln(w)
	r.Segments.print(w)
}
