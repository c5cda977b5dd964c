package activation

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
	alog "github.com/aurumcdp/aurum/log"
)

// authority is who may deliver, under which epoch (in a cluster: the last
// claim on the fence); nodeFence is one node's Fence on it.
type authority struct {
	mu    sync.Mutex
	epoch uint64
	node  string
}

func (a *authority) set(epoch uint64, node string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.epoch, a.node = epoch, node
}

type nodeFence struct {
	a    *authority
	name string
}

func (f nodeFence) Epoch(context.Context) (uint64, error) {
	f.a.mu.Lock()
	defer f.a.mu.Unlock()
	if f.a.node != f.name {
		return 0, fmt.Errorf("%w: epoch %d is %s's", alog.ErrFenced, f.a.epoch, f.a.node)
	}
	return f.a.epoch, nil
}

// people is a People of connector tests: everyone is found, nobody is
// synced.
type people struct{}

func (people) Members([]string) (uint64, []Member, error) { return 0, nil, nil }
func (people) Person(string) (Person, bool, error)        { return Person{}, true, nil }
func (people) MarkSynced(context.Context, string, int64, uint64, uint64) error {
	return nil
}

// recorder is an endpoint (a webhook, or a Twilio-like API) that records
// each request's message (the delivery id, or the texted number) and epoch
// header, and holds the request of message hold until release is closed.
type recorder struct {
	srv     *httptest.Server
	hold    string
	held    chan struct{} // closed when hold arrived
	release chan struct{}

	mu   sync.Mutex
	msgs []string
	eps  []string
}

func newRecorder(t *testing.T, hold string) *recorder {
	r := &recorder{hold: hold, held: make(chan struct{}), release: make(chan struct{})}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		msg := req.Header.Get(HeaderDelivery)
		if msg == "" {
			_ = req.ParseForm()
			msg = strings.TrimPrefix(req.PostForm.Get("To"), "+4520000")
		}
		if msg == r.hold {
			close(r.held)
			<-r.release
		}
		r.mu.Lock()
		r.msgs = append(r.msgs, msg)
		r.eps = append(r.eps, req.Header.Get(HeaderEpoch))
		r.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"sid":"SM0"}`))
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) got() ([]string, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...), append([]string(nil), r.eps...)
}

// TestFencedWorkerStops: a node's worker delivers under its epoch until the
// deliveries move to another node; then it sends nothing more, not even
// the messages it still reads (the check before each delivery step), and
// stops; the other node's worker delivers the rest. Every message reaches
// the endpoint once, in order, for a webhook and for a connector.
func TestFencedWorkerStops(t *testing.T) {
	const n, hold = 8, 3 // messages; the one in flight when the deliveries move
	for _, kind := range []string{KindWebhook, "sms"} {
		t.Run(kind, func(t *testing.T) {
			l := openLog(t)
			rec := newRecorder(t, fmt.Sprint(hold))
			d := Destination{Name: "crm", Audiences: []string{"vip"}, Channel: "web"}
			if kind == KindWebhook {
				d.URL, d.Secret = rec.srv.URL+"/hook", testSecret
			} else {
				d.Kind, d.Channel, d.SyncedAt, d.OutStart = kind, "sms", 1, 1
				d.Config = json.RawMessage(fmt.Sprintf(`{"account_sid":"AC1","auth_token":"t0123456789","from":"+4512345678","body":"hi","api_url":%q}`, rec.srv.URL))
			}
			for i := 1; i <= n; i++ {
				id := fmt.Sprint(i)
				data := fmt.Sprintf(`{"type":"audience.entered","audience":"vip","profile_id":"P%d","seq":%d,"identifiers":{"phone":["+4520000%d"]}}`, i, 100+i, i)
				if _, _, err := l.Append(context.Background(), alog.AudiencePrefix+"vip.entered", id, []byte(data)); err != nil {
					t.Fatal(err)
				}
			}
			auth := &authority{epoch: 1, node: "n1"}
			opts := testOpts(t)
			opts.People = people{}
			opts.Fence = nodeFence{auth, "n1"}
			d1 := newDispatcher(t, l, opts)
			if err := d1.Set([]Destination{d}); err != nil {
				t.Fatal(err)
			}
			select {
			case <-rec.held:
			case <-time.After(30 * time.Second):
				t.Fatal("message 3 never reached the endpoint")
			}
			// The deliveries move to n2 while n1's request for message 3
			// is in flight (it passed its check): n1 completes it, then
			// stops before its next step.
			auth.set(2, "n2")
			close(rec.release)
			check.For(t, 30*time.Second, 5*time.Millisecond, func() error {
				if st := d1.Stats()["crm"]; st.Running || st.Fenced != 1 {
					return fmt.Errorf("n1's worker: %+v", st)
				}
				return nil
			})
			if msgs, _ := rec.got(); len(msgs) != hold {
				t.Fatalf("n1 sent %v, want messages 1-%d only", msgs, hold)
			}
			opts.Fence = nodeFence{auth, "n2"}
			d2 := newDispatcher(t, l, opts)
			if err := d2.Set([]Destination{d}); err != nil {
				t.Fatal(err)
			}
			check.For(t, 30*time.Second, 5*time.Millisecond, func() error {
				if msgs, _ := rec.got(); len(msgs) < n {
					return fmt.Errorf("%d of %d delivered", len(msgs), n)
				}
				return nil
			})
			msgs, eps := rec.got()
			var want, wantEps []string
			for i := 1; i <= n; i++ {
				want = append(want, fmt.Sprint(i))
				e := ""
				if kind == KindWebhook {
					e = "1"
					if i > hold {
						e = "2"
					}
				}
				wantEps = append(wantEps, e)
			}
			if !same(msgs, want) || !same(eps, wantEps) {
				t.Fatalf("delivered %v under epochs %v, want %v under %v", msgs, eps, want, wantEps)
			}
			if st := d2.Stats()["crm"]; !st.Running || st.Fenced != 0 {
				t.Fatalf("n2's worker: %+v", st)
			}
		})
	}
}
