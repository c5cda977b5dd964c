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
	p, err := evalPropensity(dir)
	if err != nil {
		return err
	}
	p.print(w)
	fmt.Fprintln(w)
	otto, err := evalOtto(dir)
	if err != nil {
		return err
	}
	wl, err := evalWorkload()
	if err != nil {
		return err
	}
	printRecommend(w, []*recommendResult{otto, wl})
	return nil
}
