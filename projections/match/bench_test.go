package match

import "testing"

// BenchmarkTrain: training on 2,000 synthetic records (100,000 random pairs).
func BenchmarkTrain(b *testing.B) {
	c := febrlConfig()
	recs := synthetic(1500)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Train(c, recs, TrainOptions{RandomPairs: 100_000}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScore: one pair with every field present.
func BenchmarkScore(b *testing.B) {
	c := febrlConfig()
	recs := synthetic(100)
	m, err := Train(c, recs, TrainOptions{RandomPairs: 5000})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		m.Score(c, recs[0], recs[1])
	}
}
