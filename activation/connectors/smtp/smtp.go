// Package smtp is the "smtp" destination kind: on entry into an audience,
// an email from a template (subject and plain-text body over the person's
// traits) sent through a configured SMTP server, with STARTTLS (required
// unless tls is "none") and AUTH PLAIN.
//
// One connection per batch, one transaction (MAIL, RCPT, DATA) per
// message. A 4xx reply or a broken connection is retried (the rest of the
// batch with it); a 5xx reply fails the message with the server's reply.
// Each message's Message-ID is derived from the change's idempotency key,
// so a message sent again after a lost reply carries the same Message-ID
// (receivers and mail stores de-duplicate on it). SMTP keeps no list:
// exits and erasures send nothing.
package smtp

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aurumcdp/aurum/activation/connector"
)

// MaxBatch is how many messages one connection sends. One: a text or an
// email cannot be taken back, so each is its own delivery step, with the
// delivery fence checked before it (a node that lost the deliveries sends
// nothing more) and, in a first sync, its own in-doubt mark (after a crash
// at most the one message in flight is of unknown outcome).
const MaxBatch = 1

// Kind is the smtp destination kind.
var Kind = connector.Kind{
	Name:    "smtp",
	Channel: "email",
	Secrets: []string{"password"},
	New:     New,
}

// Config is an smtp destination's config.
type Config struct {
	Host     string `json:"host"`
	Port     int    `json:"port,omitempty"` // default 587
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	From     string `json:"from"`
	Subject  string `json:"subject"`
	Body     string `json:"body"`
	// TLS is "starttls" (default: required) or "none" (a local relay).
	TLS string `json:"tls,omitempty"`
	// CAFile is a PEM file of CAs to trust besides the system's.
	CAFile string `json:"ca_file,omitempty"`
}

type sender struct {
	cfg           Config
	from          *mail.Address
	subject, body *connector.Template
	tls           *tls.Config
	env           connector.Env
}

// New checks config and returns the connector.
func New(config json.RawMessage, env connector.Env) (connector.Connector, error) {
	var c Config
	if err := connector.DecodeConfig(config, &c); err != nil {
		return nil, err
	}
	if c.Port == 0 {
		c.Port = 587
	}
	if c.TLS == "" {
		c.TLS = "starttls"
	}
	if err := connector.Required("host", c.Host, "from", c.From); err != nil {
		return nil, err
	}
	if c.Port < 1 || c.Port > 65535 {
		return nil, connector.Fieldf("port", "%d is not a port", c.Port)
	}
	if c.TLS != "starttls" && c.TLS != "none" {
		return nil, connector.Fieldf("tls", "%q: want starttls or none", c.TLS)
	}
	if (c.Username == "") != (c.Password == "") {
		return nil, connector.Fieldf("password", "give both username and password, or neither")
	}
	from, err := mail.ParseAddress(c.From)
	if err != nil {
		return nil, connector.Fieldf("from", "%v", err)
	}
	s := &sender{cfg: c, from: from, env: env}
	if s.subject, err = connector.ParseTemplate("subject", c.Subject); err != nil {
		return nil, err
	}
	if s.body, err = connector.ParseTemplate("body", c.Body); err != nil {
		return nil, err
	}
	s.tls = &tls.Config{ServerName: c.Host, MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, connector.Fieldf("ca_file", "%v", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, connector.Fieldf("ca_file", "no PEM certificate in %s", c.CAFile)
		}
		s.tls.RootCAs = pool
	}
	return s, nil
}

func (s *sender) MaxBatch() int { return MaxBatch }

// classify turns an SMTP error into a Result: 4xx and no reply retried,
// 5xx failed.
func classify(what string, err error) connector.Result {
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 {
		return connector.Result{Status: connector.Failed, Reason: fmt.Sprintf("smtp: %s: %d %s", what, te.Code, te.Msg)}
	}
	return connector.Result{Status: connector.Retry, Reason: fmt.Sprintf("smtp: %s: %v", what, err)}
}

func (s *sender) Deliver(ctx context.Context, changes []connector.Change) []connector.Result {
	out := make([]connector.Result, len(changes))
	var todo []int
	for i, c := range changes {
		if c.Op != connector.Add || connector.Last(c.Emails) == "" {
			out[i] = connector.Result{Status: connector.Delivered} // nothing to send
			continue
		}
		todo = append(todo, i)
	}
	if len(todo) == 0 {
		return out
	}
	client, res := s.open(ctx)
	if client == nil {
		for _, i := range todo {
			out[i] = res
		}
		return out
	}
	defer client.Close()
	for k, i := range todo {
		out[i] = s.send(client, changes[i])
		if out[i].Status == connector.Retry {
			for _, j := range todo[k+1:] {
				out[j] = out[i] // the connection is in doubt: leave the rest to the retry
			}
			return out
		}
		if out[i].Status == connector.Failed {
			_ = client.Reset()
		}
	}
	_ = client.Quit()
	return out
}

// open connects, says EHLO, starts TLS and authenticates.
func (s *sender) open(ctx context.Context) (*smtp.Client, connector.Result) {
	addr := net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port))
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, connector.Result{Status: connector.Retry, Reason: fmt.Sprintf("smtp: dial %s: %v", addr, err)}
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	client, err := smtp.NewClient(conn, s.cfg.Host)
	if err != nil {
		_ = conn.Close()
		return nil, classify("greeting", err)
	}
	fail := func(r connector.Result) (*smtp.Client, connector.Result) {
		_ = client.Close()
		return nil, r
	}
	if err := client.Hello("aurum"); err != nil {
		return fail(classify("EHLO", err))
	}
	if s.cfg.TLS == "starttls" {
		if ok, _ := client.Extension("STARTTLS"); !ok {
			return fail(connector.Result{Status: connector.Failed, Reason: "smtp: the server does not offer STARTTLS (required)"})
		}
		if err := client.StartTLS(s.tls); err != nil {
			return fail(classify("STARTTLS", err))
		}
	}
	if s.cfg.Username != "" {
		if err := client.Auth(smtp.PlainAuth("", s.cfg.Username, s.cfg.Password, s.cfg.Host)); err != nil {
			return fail(classify("AUTH", err))
		}
	}
	return client, connector.Result{}
}

// MessageID is the Message-ID of a change: the same for every attempt.
func MessageID(changeID, fromDomain string) string {
	h := sha256.Sum256([]byte(changeID))
	return "<" + hex.EncodeToString(h[:16]) + "@" + fromDomain + ">"
}

// message renders the email of c.
func (s *sender) message(c connector.Change, to string) ([]byte, error) {
	subject, err := s.subject.Render(c)
	if err != nil {
		return nil, err
	}
	body, err := s.body.Render(c)
	if err != nil {
		return nil, err
	}
	domain := s.from.Address[strings.LastIndexByte(s.from.Address, '@')+1:]
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\n", s.from.String())
	fmt.Fprintf(&b, "To: %s\r\n", (&mail.Address{Address: to}).String())
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", strings.ReplaceAll(subject, "\n", " ")))
	fmt.Fprintf(&b, "Date: %s\r\n", s.env.Now().UTC().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: %s\r\n", MessageID(c.ID, domain))
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n"))
	b.WriteString("\r\n")
	return []byte(b.String()), nil
}

func (s *sender) send(client *smtp.Client, c connector.Change) connector.Result {
	to := connector.Last(c.Emails)
	msg, err := s.message(c, to)
	if err != nil {
		return connector.Result{Status: connector.Failed, Reason: "smtp: " + err.Error()}
	}
	if err := client.Mail(s.from.Address); err != nil {
		return classify("MAIL FROM", err)
	}
	if err := client.Rcpt(to); err != nil {
		return classify("RCPT TO", err)
	}
	w, err := client.Data()
	if err != nil {
		return classify("DATA", err)
	}
	if _, err := w.Write(msg); err != nil {
		return classify("DATA", err)
	}
	if err := w.Close(); err != nil {
		return classify("DATA", err)
	}
	return connector.Result{Status: connector.Delivered}
}
