package activation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	alog "github.com/aurumcdp/aurum/log"
)

// fakeConsent answers from a table: profile → channels without consent.
// Profiles in failing get an error on their first check per channel.
type fakeConsent struct {
	mu      sync.Mutex
	denied  map[string][]string
	failing map[string]bool
	asked   map[string]int // "profile/channel" → checks
}

func (f *fakeConsent) Allowed(profile, channel string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := profile + "/" + channel
	f.asked[key]++
	if f.failing[profile] && f.asked[key] == 1 {
		return false, errors.New("state unavailable")
	}
	for _, c := range f.denied[profile] {
		if c == channel {
			return false, nil
		}
	}
	return true, nil
}

func (f *fakeConsent) checks(channel string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for k, c := range f.asked {
		if strings.HasSuffix(k, "/"+channel) {
			n += c
		}
	}
	return n
}

func publishFor(t *testing.T, l *alog.Log, aud, id, profile string) {
	t.Helper()
	data := fmt.Sprintf(`{"msg":%q,"audience":%q,"profile_id":%q}`, id, aud, profile)
	if profile == "" {
		data = fmt.Sprintf(`{"msg":%q}`, id)
	}
	if _, _, err := l.Append(context.Background(), alog.AudiencePrefix+aud+".entered", id, []byte(data)); err != nil {
		t.Fatal(err)
	}
}

// TestConsentSkip checks the worker's consent path: a person without
// consent for a destination's channel is skipped (acked, counted, never
// retried) while other channels and other people are delivered; a failed
// check is retried; a message without a profile id is dead-lettered, not
// delivered; a "none" destination is delivered everything unchecked.
func TestConsentSkip(t *testing.T) {
	l := openLog(t)
	mail, text, warehouse := newEndpoint(t, nil), newEndpoint(t, nil), newEndpoint(t, nil)
	fc := &fakeConsent{
		denied:  map[string][]string{"p-optout": {"email"}, "p-none": {"email", "sms", "push", "ads", "web"}},
		failing: map[string]bool{"p-flaky": true},
		asked:   map[string]int{},
	}
	var skipMu sync.Mutex
	skips := map[string]int{}
	dl := &deadLetters{}
	opts := testOpts(t)
	opts.Consent = fc
	opts.DeadLetter = dl.write
	opts.OnSkip = func(dest, reason string) {
		skipMu.Lock()
		defer skipMu.Unlock()
		skips[dest+"/"+reason]++
	}
	d := newDispatcher(t, l, opts)
	mk := func(name string, ep *endpoint, ch string) Destination {
		dd := dest(name, ep, "vip")
		dd.Channel = ch
		return dd
	}
	if err := d.Set([]Destination{mk("mail", mail, "email"), mk("text", text, "sms"), mk("warehouse", warehouse, ChannelNone)}); err != nil {
		t.Fatal(err)
	}
	publishFor(t, l, "vip", "m1", "p-optout")
	publishFor(t, l, "vip", "m2", "p-ok")
	publishFor(t, l, "vip", "m3", "p-flaky")
	publishFor(t, l, "vip", "m4", "p-none")
	publishFor(t, l, "vip", "m5", "")
	publishFor(t, l, "vip", "m6", "p-optout")

	warehouse.waitDelivered(t, 6)
	text.waitDelivered(t, 3)
	mail.waitDelivered(t, 2)
	waitStats(t, d, "mail", func(s DestStats) bool { return s.LastSeq == 6 })
	waitStats(t, d, "text", func(s DestStats) bool { return s.LastSeq == 6 })
	for _, ep := range []*endpoint{mail, text, warehouse} {
		ep.check()
	}
	if got := mail.delivered(); !same(got, []string{"m2", "m3"}) {
		t.Errorf("email destination got %v, want [m2 m3]", got)
	}
	if got := text.delivered(); !same(got, []string{"m1", "m2", "m3", "m6"}) {
		t.Errorf("sms destination got %v, want [m1 m2 m3 m6]", got)
	}
	if got := warehouse.delivered(); !same(got, ids(1, 6)) {
		t.Errorf("none destination got %v, want all", got)
	}
	if n := fc.checks(ChannelNone); n != 0 {
		t.Errorf("consent checked %d times for channel none", n)
	}
	st := d.Stats()["mail"]
	if st.Skipped != 3 || st.Delivered != 2 || st.DeadLettered != 1 {
		t.Errorf("mail stats %+v, want 3 skipped, 2 delivered, 1 dead-lettered", st)
	}
	if st := d.Stats()["text"]; st.Skipped != 1 || st.Delivered != 4 {
		t.Errorf("text stats %+v, want 1 skipped, 4 delivered", st)
	}
	skipMu.Lock()
	if skips["mail/consent"] != 3 || skips["text/consent"] != 1 || len(skips) != 2 {
		t.Errorf("OnSkip calls %v", skips)
	}
	skipMu.Unlock()
	// Skips are acked once: a skipped message is checked exactly once.
	fc.mu.Lock()
	if n := fc.asked["p-optout/email"]; n != 2 {
		t.Errorf("p-optout/email checked %d times, want 2 (m1, m6)", n)
	}
	if n := fc.asked["p-flaky/email"]; n != 2 {
		t.Errorf("p-flaky/email checked %d times, want 2 (an error, then the retry)", n)
	}
	fc.mu.Unlock()
	letters := dl.get()
	if len(letters) != 2 || letters[0].Destination == letters[1].Destination {
		t.Fatalf("dead letters %+v, want m5 once for mail and once for text", letters)
	}
	for _, l := range letters {
		if l.DeliveryID != "m5" || !strings.Contains(l.Reason, "profile_id") {
			t.Errorf("dead letter %+v", l)
		}
	}
}

// TestErasedExitBypassesConsent checks that an exit with reason "erased"
// (no personal data, the signal to forget the person) reaches a contact
// channel's destination even though the erased person has no consent, while
// an ordinary exit of the same person is skipped.
func TestErasedExitBypassesConsent(t *testing.T) {
	l := openLog(t)
	mail := newEndpoint(t, nil)
	fc := &fakeConsent{denied: map[string][]string{"p-gone": {"email"}}, asked: map[string]int{}}
	opts := testOpts(t)
	opts.Consent = fc
	d := newDispatcher(t, l, opts)
	dd := dest("mail", mail, "vip")
	dd.Channel = "email"
	if err := d.Set([]Destination{dd}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct{ id, reason string }{{"x1", "time"}, {"x2", ReasonErased}} {
		data := fmt.Sprintf(`{"type":"audience.exited","audience":"vip","profile_id":"p-gone","reason":%q,"msg":%q}`, m.reason, m.id)
		if _, _, err := l.Append(context.Background(), alog.AudiencePrefix+"vip.exited", m.id, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	waitStats(t, d, "mail", func(s DestStats) bool { return s.LastSeq == 2 })
	mail.waitDelivered(t, 1)
	mail.check()
	if got := mail.delivered(); !same(got, []string{"x2"}) {
		t.Errorf("email destination got %v, want only the erased exit [x2]", got)
	}
	if st := d.Stats()["mail"]; st.Skipped != 1 || st.Delivered != 1 {
		t.Errorf("mail stats %+v, want 1 skipped, 1 delivered", st)
	}
}
