package auth

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestParseRole(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Role
		ok   bool
	}{
		{"admin", RoleAdmin, true}, {"editor", RoleEditor, true}, {"viewer", RoleViewer, true},
		{"privacy", RolePrivacy, true}, {"", "", false}, {"Admin", "", false}, {"root", "", false},
	} {
		got, err := ParseRole(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseRole(%q) = %q, %v", tc.in, got, err)
		}
	}
}

func TestRoleAllowed(t *testing.T) {
	for _, tc := range []struct {
		r     Role
		roles []Role
		want  bool
	}{
		{RoleAdmin, nil, true},
		{RoleEditor, nil, false},
		{RoleEditor, []Role{RoleEditor, RoleViewer}, true},
		{RoleViewer, []Role{RoleEditor}, false},
		{RolePrivacy, []Role{RolePrivacy}, true},
		{Role("bogus"), []Role{Role("bogus")}, false},
	} {
		if got := tc.r.Allowed(tc.roles); got != tc.want {
			t.Errorf("%q.Allowed(%v) = %v", tc.r, tc.roles, got)
		}
	}
}

func TestPrincipalContext(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Fatal("principal in an empty context")
	}
	p := Principal{Name: "ci", Role: RoleEditor, Kind: KindToken, TokenID: "01J"}
	got, ok := FromContext(WithPrincipal(context.Background(), p))
	if !ok || got != p {
		t.Fatalf("FromContext = %+v %v", got, ok)
	}
}

func TestSecret(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		s, err := NewSecret()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(s, TokenPrefix) || !LooksLikeSecret(s) || seen[s] {
			t.Fatalf("secret %q (seen %v)", s, seen[s])
		}
		seen[s] = true
		h1, h2 := HashSecret(s), HashSecret(s)
		if !Equal(h1[:], h2[:]) {
			t.Fatal("hash not stable")
		}
		other := HashSecret(s + "x")
		if Equal(h1[:], other[:]) || Equal(h1[:], h1[:31]) {
			t.Fatal("different hashes equal")
		}
	}
	for _, bad := range []string{"", "aur_", "wk_abc", "aur_" + strings.Repeat("!", 43), "aur_" + strings.Repeat("A", 42)} {
		if LooksLikeSecret(bad) {
			t.Errorf("LooksLikeSecret(%q)", bad)
		}
	}
}

var fastParams = PasswordParams{Memory: 64, Time: 1, Threads: 1}

func TestPassword(t *testing.T) {
	for _, tc := range []struct {
		pw string
		ok bool
	}{
		{"short", false}, {"elevenchars", false}, {"twelve chars", true},
		{"ææææææææææææ", true}, {strings.Repeat("x", 2000), false},
	} {
		if err := CheckPassword(tc.pw); (err == nil) != tc.ok {
			t.Errorf("CheckPassword(%d chars) = %v", len(tc.pw), err)
		}
	}
	h, err := HashPassword("correct horse battery", fastParams)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") || strings.Contains(h, "correct") {
		t.Fatalf("hash %q", h)
	}
	h2, _ := HashPassword("correct horse battery", fastParams)
	if h == h2 {
		t.Fatal("same hash twice: no salt")
	}
	for _, tc := range []struct {
		pw   string
		want bool
	}{{"correct horse battery", true}, {"correct horse batterY", false}, {"", false}} {
		ok, err := VerifyPassword(tc.pw, h)
		if err != nil || ok != tc.want {
			t.Errorf("VerifyPassword(%q) = %v, %v", tc.pw, ok, err)
		}
	}
	for _, bad := range []string{"", "plain", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=18$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5", "$argon2id$v=19$m=0,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=64,t=1,p=1$!!$a2V5a2V5a2V5a2V5a2V5"} {
		if _, err := VerifyPassword("x", bad); err == nil {
			t.Errorf("VerifyPassword accepted hash %q", bad)
		}
	}
}

// TestHOTPVectors: RFC 4226 Appendix D.
func TestHOTPVectors(t *testing.T) {
	secret := []byte("12345678901234567890")
	want := []string{"755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"}
	for c, w := range want {
		if got := HOTP(secret, uint64(c), 6); got != w {
			t.Errorf("HOTP(%d) = %s, want %s", c, got, w)
		}
	}
}

// TestTOTPVectors: RFC 6238 Appendix B (SHA-1, 8 digits).
func TestTOTPVectors(t *testing.T) {
	secret := []byte("12345678901234567890")
	for _, tc := range []struct {
		unix int64
		want string
	}{
		{59, "94287082"}, {1111111109, "07081804"}, {1111111111, "14050471"},
		{1234567890, "89005924"}, {2000000000, "69279037"}, {20000000000, "65353130"},
	} {
		if got := HOTP(secret, TOTPStep(time.Unix(tc.unix, 0)), 8); got != tc.want {
			t.Errorf("T=%d: %s, want %s", tc.unix, got, tc.want)
		}
	}
	// The 6-digit code is the last 6 digits of the same truncation.
	if got := TOTP(secret, time.Unix(59, 0)); got != "287082" {
		t.Errorf("TOTP(59) = %s", got)
	}
}

func TestVerifyTOTP(t *testing.T) {
	secret := []byte("12345678901234567890")
	now := time.Unix(1111111111, 0)
	step := TOTPStep(now)
	at := func(d int) string { return HOTP(secret, uint64(int64(step)+int64(d)), 6) }
	for _, tc := range []struct {
		name     string
		code     string
		last     uint64
		wantStep uint64
		ok       bool
	}{
		{"current", at(0), 0, step, true},
		{"previous step (skew)", at(-1), 0, step - 1, true},
		{"next step (skew)", at(1), 0, step + 1, true},
		{"two steps old", at(-2), 0, 0, false},
		{"two steps ahead", at(2), 0, 0, false},
		{"replayed: step already used", at(0), step, 0, false},
		{"older than the last used", at(-1), step, 0, false},
		{"newer than the last used", at(1), step, step + 1, true},
		{"short", at(0)[:5], 0, 0, false},
		{"letters", "abcdef", 0, 0, false},
	} {
		got, ok := VerifyTOTP(secret, tc.code, now, tc.last)
		if ok != tc.ok || got != tc.wantStep {
			t.Errorf("%s: VerifyTOTP = %d %v, want %d %v", tc.name, got, ok, tc.wantStep, tc.ok)
		}
	}
}

func TestTOTPURI(t *testing.T) {
	secret, err := NewTOTPSecret()
	if err != nil {
		t.Fatal(err)
	}
	uri := TOTPURI("Aurum", "ada@example.com", secret)
	for _, want := range []string{"otpauth://totp/Aurum:ada@example.com?", "issuer=Aurum", "digits=6", "period=30", "algorithm=SHA1", "secret="} {
		if !strings.Contains(uri, want) {
			t.Errorf("URI %q lacks %q", uri, want)
		}
	}
	got, err := TOTPSecretFromURI(uri)
	if err != nil || string(got) != string(secret) {
		t.Fatalf("secret round trip: %x %v", got, err)
	}
	for _, bad := range []string{"", "https://x", "otpauth://hotp/x?secret=AAAA", "otpauth://totp/x?secret=1!"} {
		if _, err := TOTPSecretFromURI(bad); err == nil {
			t.Errorf("TOTPSecretFromURI(%q) accepted", bad)
		}
	}
}

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time       { return c.t }
func (c *clock) add(d time.Duration)  { c.t = c.t.Add(d) }
func newClock() *clock                { return &clock{t: time.Unix(1700000000, 0)} }
func seconds(d time.Duration) float64 { return d.Seconds() }

func TestLimiter(t *testing.T) {
	c := newClock()
	l := NewLimiter(LimiterOptions{Rate: 10, Burst: 20, Now: c.now})
	type step struct {
		advance time.Duration
		key     string
		n       float64
		ok      bool
		wait    time.Duration
	}
	steps := []step{
		{0, "a", 15, true, 0},
		{0, "a", 5, true, 0},
		{0, "a", 1, false, 100 * time.Millisecond},
		{0, "b", 20, true, 0}, // keys are independent
		{100 * time.Millisecond, "a", 1, true, 0},
		{0, "a", 3, false, 300 * time.Millisecond},
		{time.Second, "a", 10, true, 0},
		{10 * time.Second, "a", 100, true, 0}, // more than a burst costs a burst
		{0, "a", 1, false, 100 * time.Millisecond},
	}
	for i, s := range steps {
		c.add(s.advance)
		ok, wait := l.AllowN(s.key, s.n)
		if ok != s.ok || wait != s.wait {
			t.Fatalf("step %d %+v: got %v %v", i, s, ok, wait)
		}
	}
}

func TestLimiterBoundedMemory(t *testing.T) {
	c := newClock()
	l := NewLimiter(LimiterOptions{Rate: 1, Burst: 2, MaxKeys: 100, Now: c.now})
	for i := range 1000 {
		l.AllowN("k"+string(rune('a'+i%26))+time.Duration(i).String(), 2)
		if l.Len() > 100 {
			t.Fatalf("%d keys after %d inserts", l.Len(), i+1)
		}
	}
	// A busy key survives eviction of idle ones.
	l.AllowN("busy", 2)
	c.add(3 * time.Second) // every other bucket is full again: idle
	for i := range 99 {
		l.AllowN("new"+time.Duration(i).String(), 0)
	}
	if ok, _ := l.AllowN("busy", 2); !ok {
		t.Fatal("busy key should have refilled")
	}
	if l.Len() > 100 {
		t.Fatalf("%d keys", l.Len())
	}
}

func TestThrottle(t *testing.T) {
	c := newClock()
	th := NewThrottle(ThrottleOptions{Failures: 3, Every: 10 * time.Second, Now: c.now})
	for i := range 3 {
		if ok, _ := th.Check("ip"); !ok {
			t.Fatalf("throttled after %d failures", i)
		}
		th.Fail("ip")
	}
	ok, wait := th.Check("ip")
	if ok || seconds(wait) != 10 {
		t.Fatalf("after 3 failures: %v %v, want throttled for 10s", ok, wait)
	}
	if ok, _ := th.Check("other"); !ok {
		t.Fatal("other key throttled")
	}
	c.add(4 * time.Second)
	if ok, wait := th.Check("ip"); ok || wait != 6*time.Second {
		t.Fatalf("after 4s: %v %v", ok, wait)
	}
	c.add(6 * time.Second)
	if ok, _ := th.Check("ip"); !ok {
		t.Fatal("not released after 10s")
	}
	th.Fail("ip")
	if ok, _ := th.Check("ip"); ok {
		t.Fatal("one more failure should throttle again")
	}
	th.Succeed("ip")
	if ok, _ := th.Check("ip"); !ok {
		t.Fatal("success should reset")
	}
}
