package match

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
)

func febrlConfig() Config {
	return Config{
		Fields: map[string]Comparison{
			"given_name": Name, "surname": Name, "date_of_birth": Date,
			"street_number": Exact, "address_1": Text, "suburb": Text,
			"postcode": Exact, "state": Exact, "soc_sec_id": Exact,
		},
		Blocking: [][]string{{"surname"}, {"given_name", "date_of_birth"}, {"postcode", "street_number"}, {"soc_sec_id"}},
	}
}

func TestJaroWinkler(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want float64
	}{
		{"martha", "marhta", 0.9611},
		{"dwayne", "duane", 0.84},
		{"dixon", "dicksonx", 0.8133},
		{"jones", "johnson", 0.8323},
		{"abc", "abc", 1},
		{"abc", "xyz", 0},
		{"", "abc", 0},
		{"crate", "trace", 0.7333},
	} {
		got := JaroWinkler(tc.a, tc.b)
		if math.Abs(got-tc.want) > 1e-4 {
			t.Errorf("JaroWinkler(%q, %q) = %.4f, want %.4f", tc.a, tc.b, got, tc.want)
		}
		if rev := JaroWinkler(tc.b, tc.a); rev != got {
			t.Errorf("JaroWinkler not symmetric on %q, %q: %v vs %v", tc.a, tc.b, got, rev)
		}
	}
}

func TestLevels(t *testing.T) {
	for _, tc := range []struct {
		k    Comparison
		a, b string
		want string
	}{
		{Name, "Mitchell", " mitchell ", "exact"},
		{Name, "martha", "marhta", "jw_0.92"},
		{Name, "dwayne", "duane", "jw_0.70"},
		{Name, "smith", "harris", "else"},
		{Name, "dixon", "dicksonx", "jw_0.70"},
		{Name, "shelley", "shelly", "jw_0.92"},
		{Name, "", "x", Missing},
		{Text, "wallaby place", "wallaby  place", "exact"},
		{Text, "wallaby place", "wallabyplace", "jw_0.92"},
		{Date, "19560409", "1956-04-09", "exact"},
		{Date, "19560409", "19560419", "typo"},
		{Date, "19560409", "19650409", "typo"},
		{Date, "19560409", "19560904", "day_month_transposed"},
		{Date, "19560409", "19570419", "else"},
		{Date, "19560409", "", Missing},
		{Phone, "+61 2 9876 5432", "02 9876 5432", "exact"},
		{Phone, "0061 298765432", "(02) 9876-5432", "exact"},
		{Phone, "02 9876 5432", "02 9876 5433", "else"},
		{Email, "Ann.Lee+shop@Example.com", "ann.lee@example.com ", "exact"},
		{Email, "ann.lee@example.com", "ann.lee@example.org", "else"},
		{Exact, "2119", "2119", "exact"},
		{Exact, "NSW", "nsw", "exact"},
		{Exact, "2119", "2118", "else"},
		{Exact, "  ", "2118", Missing},
	} {
		lvs := []int{0}
		levels([]Comparison{tc.k}, []string{Normalize(tc.k, tc.a)}, []string{Normalize(tc.k, tc.b)}, lvs)
		lv := lvs[0]
		got := Missing
		if lv >= 0 {
			got = levelNames[tc.k][lv]
		}
		if got != tc.want {
			t.Errorf("%s(%q, %q) = %s, want %s", tc.k, tc.a, tc.b, got, tc.want)
		}
	}
}

func TestBlockKeys(t *testing.T) {
	c := febrlConfig()
	for _, tc := range []struct {
		r    Record
		want []string
	}{
		{Record{"surname": "Green", "given_name": "Mitchell", "date_of_birth": "1956-04-09", "postcode": "2119", "street_number": "7", "soc_sec_id": "1804974"},
			[]string{"surname=green", "given_name,date_of_birth=mitchell\x1f19560409", "postcode,street_number=2119\x1f7", "soc_sec_id=1804974"}},
		{Record{"surname": "O'Brien", "postcode": "2119"}, []string{"surname=obrien"}},
		{Record{"surname": "  Smith-Jones ", "given_name": "Ann", "date_of_birth": "1980/01/02"}, []string{"surname=smith jones", "given_name,date_of_birth=ann\x1f19800102"}},
		{Record{"given_name": "x", "surname": "  "}, nil},
		{Record{}, nil},
	} {
		got := BlockKeys(c, tc.r)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("BlockKeys(%v) = %q, want %q", tc.r, got, tc.want)
		}
	}
	// Duplicate rules give one key; the key names the rule's traits.
	c.Blocking = [][]string{{"surname"}, {"surname"}}
	if got := BlockKeys(c, Record{"surname": "x"}); !reflect.DeepEqual(got, []string{"surname=x"}) {
		t.Errorf("duplicate rules: %q", got)
	}
}

func TestValidate(t *testing.T) {
	ok := febrlConfig()
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no fields", func(c *Config) { c.Fields = nil }, "fields: at least one"},
		{"bad comparison", func(c *Config) { c.Fields["surname"] = "nam" }, `fields.surname: unknown comparison "nam"`},
		{"empty trait", func(c *Config) { c.Fields[""] = Exact }, "empty trait name"},
		{"no blocking", func(c *Config) { c.Blocking = nil }, "blocking: at least one rule"},
		{"empty rule", func(c *Config) { c.Blocking = append(c.Blocking, nil) }, "blocking[4]: empty rule"},
		{"unknown trait", func(c *Config) { c.Blocking[1] = []string{"given_name", "dob"} }, `blocking[1][1]: trait "dob" is not in fields`},
		{"twice", func(c *Config) { c.Blocking[0] = []string{"surname", "surname"} }, `blocking[0][1]: trait "surname" twice`},
		{"auto_merge", func(c *Config) { c.AutoMerge = 1.5 }, "auto_merge: 1.5"},
		{"review negative", func(c *Config) { c.Review = -0.1 }, "review: -0.1"},
		{"review NaN", func(c *Config) { c.Review = math.NaN() }, "review: NaN"},
		{"review above", func(c *Config) { c.Review = 0.995 }, "review: 0.995 is above auto_merge 0.99"},
	} {
		c := febrlConfig()
		tc.mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate() = %v, want an ErrInvalid containing %q", tc.name, err, tc.want)
		}
	}
}

func TestClassify(t *testing.T) {
	c := Config{}
	for _, tc := range []struct {
		p    float64
		want string
	}{{0.995, "merge"}, {0.99, "merge"}, {0.9, "review"}, {0.8, "review"}, {0.79, "none"}, {0, "none"}} {
		if got := c.Classify(tc.p); got != tc.want {
			t.Errorf("Classify(%v) = %s, want %s", tc.p, got, tc.want)
		}
	}
	c = Config{AutoMerge: 0.5, Review: 0.2}
	if c.Classify(0.6) != "merge" || c.Classify(0.3) != "review" || c.Classify(0.1) != "none" {
		t.Error("Classify ignores configured thresholds")
	}
}

// synthetic returns n people, each once and some a second time with a typo.
func synthetic(n int) []Record {
	given := []string{"john", "mary", "peter", "susan", "james", "linda", "robert", "karen", "michael", "emma"}
	sur := []string{"smith", "jones", "brown", "wilson", "taylor", "white", "martin", "thompson", "walker", "harris", "young", "king"}
	var out []Record
	for i := range n {
		r := Record{
			"given_name":    given[i%len(given)],
			"surname":       sur[(i/len(given))%len(sur)] + fmt.Sprint([]string{"", "son", "er"}[i%3]),
			"date_of_birth": fmt.Sprintf("19%02d%02d%02d", 40+i%60, 1+i%12, 1+i%28),
			"postcode":      fmt.Sprint(2000 + i%300),
			"street_number": fmt.Sprint(1 + i%97),
			"soc_sec_id":    fmt.Sprint(1000000 + i*7919),
			"state":         []string{"nsw", "vic", "qld"}[i%3],
		}
		out = append(out, r)
		if i%2 == 0 {
			d := Record{}
			for k, v := range r {
				d[k] = v
			}
			switch i % 8 {
			case 0:
				d["surname"] = d["surname"][:len(d["surname"])-1] + "x"
			case 2:
				d["date_of_birth"] = d["date_of_birth"][:7] + "9"
			case 4:
				delete(d, "soc_sec_id")
			case 6:
				d["given_name"] = d["given_name"] + "a"
			}
			out = append(out, d)
		}
	}
	return out
}

func TestTrainScoreDeterministic(t *testing.T) {
	c := febrlConfig()
	recs := synthetic(400)
	m1, err := Train(c, recs, TrainOptions{RandomPairs: 20000, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Train(c, recs, TrainOptions{RandomPairs: 20000, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m1, m2) || m1.Version == "" {
		t.Fatalf("Train is not deterministic: %s vs %s", m1.Version, m2.Version)
	}
	// A duplicate with a typo scores high, two different people low.
	dup := m1.Score(c, recs[0], recs[1])
	other := m1.Score(c, recs[0], recs[2])
	if c.Classify(dup.Probability) != "merge" {
		t.Errorf("duplicate: p = %v (%+v)", dup.Probability, dup.Contributions)
	}
	if c.Classify(other.Probability) != "none" {
		t.Errorf("different people: p = %v (%+v)", other.Probability, other.Contributions)
	}
	// Contributions are sorted by field and add up to the weight.
	sum := m1.PriorWeight()
	for i, ct := range dup.Contributions {
		if i > 0 && dup.Contributions[i-1].Field >= ct.Field {
			t.Errorf("contributions not sorted: %+v", dup.Contributions)
		}
		sum += ct.Weight
	}
	if math.Abs(sum-dup.Weight) > 1e-9 {
		t.Errorf("contributions add to %v, weight %v", sum, dup.Weight)
	}
	if d2 := m1.Score(c, recs[1], recs[0]); !reflect.DeepEqual(d2, dup) {
		t.Errorf("Score not symmetric: %+v vs %+v", d2, dup)
	}
}
