package smtp_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/activation"
	"github.com/aurumcdp/aurum/activation/connector"
	"github.com/aurumcdp/aurum/activation/connectortest"
	"github.com/aurumcdp/aurum/internal/testcert"
	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
)

// server is a real SMTP server in-process (github.com/emersion/go-smtp):
// STARTTLS with a throwaway certificate, AUTH PLAIN only over TLS, mail
// refused before AUTH; a throttled server answers MAIL with 451 4.7.1, one
// in an outage with 421 4.3.0.
type server struct {
	user, pass string
	book       *connectortest.Book
	faults     *connectortest.Faults

	mu   sync.Mutex
	msgs []*mail.Message
	raw  [][]byte
}

type session struct {
	s      *server
	authed bool
	rcpt   []string
}

func (s *server) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &session{s: s}, nil }

func (se *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (se *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != se.s.user || pass != se.s.pass {
			return errors.New("invalid credentials")
		}
		se.authed = true
		return nil
	}), nil
}

func (se *session) Mail(string, *gosmtp.MailOptions) error {
	if !se.authed {
		return gosmtp.ErrAuthRequired
	}
	switch se.s.faults.Get() {
	case connectortest.Throttle:
		return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 7, 1}, Message: "Rate limit exceeded, try again later"}
	case connectortest.Outage:
		return &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Service not available"}
	}
	return nil
}

func (se *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if !strings.Contains(to, "@") {
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
	}
	se.rcpt = append(se.rcpt, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 6, 0}, Message: "malformed message"}
	}
	se.s.mu.Lock()
	se.s.msgs = append(se.s.msgs, m)
	se.s.raw = append(se.s.raw, raw)
	se.s.mu.Unlock()
	for _, to := range se.rcpt {
		se.s.book.Request()
		se.s.book.Send(to)
	}
	return nil
}

func (se *session) Reset()        { se.rcpt = nil }
func (se *session) Logout() error { return nil }

// start starts a server; it is stopped when the test ends.
func start(t *testing.T) (*server, int, string) {
	caFile, certFile, keyFile := testcert.Write(t)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{user: "aurum", pass: "smtp-password-0123", book: connectortest.NewBook(), faults: &connectortest.Faults{}}
	srv := gosmtp.NewServer(s)
	srv.Domain = "localhost"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }() // stopped by srv.Close
	t.Cleanup(func() { _ = srv.Close() })
	return s, ln.Addr().(*net.TCPAddr).Port, caFile
}

func config(s *server, port int, caFile string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"host":"127.0.0.1","port":%d,"username":%q,"password":%q,"from":"Shop <news@shop.example>",
		"subject":"Welcome, {{.Traits.first_name}}","body":"Hello {{.Traits.first_name}},\nyou are now in {{.Audience}}.","ca_file":%q}`,
		port, s.user, s.pass, caFile))
}

func TestSMTP(t *testing.T) {
	s, port, caFile := start(t)
	connectortest.Run(t, connectortest.Case{
		Kind:   "smtp",
		Config: func(string) json.RawMessage { return config(s, port, caFile) },
		Book:   s.book, Faults: s.faults,
		Key: connectortest.KeyEmail, Messages: true,
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := map[string]bool{}
	for _, m := range s.msgs {
		if m.Header.Get("To") == "<p1@example.com>" {
			if m.Header.Get("Subject") != "Welcome, P1" {
				t.Errorf("subject %q", m.Header.Get("Subject"))
			}
			b, _ := io.ReadAll(m.Body)
			if string(b) != "Hello P1,\r\nyou are now in vip.\r\n" {
				t.Errorf("body %q", b)
			}
		}
		id := m.Header.Get("Message-Id")
		if id == "" || ids[id] {
			t.Fatalf("Message-ID %q missing or repeated", id)
		}
		ids[id] = true
	}
}

// TestRecordedRequest: docs/connectors.md shows the message the connector
// sends (as the server received it after DATA).
func TestRecordedRequest(t *testing.T) {
	s, port, caFile := start(t)
	c, err := activation.Kinds()["smtp"].New(config(s, port, caFile), connector.Env{Destination: "doc",
		Now: func() time.Time { return connectortest.ExampleTime }})
	if err != nil {
		t.Fatal(err)
	}
	if res := c.Deliver(context.Background(), []connector.Change{connectortest.Example}); res[0].Status != connector.Delivered {
		t.Fatalf("%+v", res[0])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	connectortest.CheckDoc(t, "smtp", strings.ReplaceAll(string(s.raw[0]), "\r\n", "\n"))
}
