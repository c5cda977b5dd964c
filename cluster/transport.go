package cluster

import (
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer is raft's TCP stream layer that also owns the connections
// it accepts: hashicorp/raft's NetworkTransport serves each in a goroutine
// that ends only when the peer hangs up, so Close closes them and wait
// returns once every serving goroutine has let go of its connection (it
// closes it on its way out). With a TLS configuration (Options.TLS) both
// the connections it accepts and those it dials are TLS, each side
// verifying the other's certificate.
type streamLayer struct {
	ln  net.Listener
	adv net.Addr
	tls *tls.Config // nil: plain TCP

	mu     sync.Mutex
	conns  map[*servedConn]struct{}
	closed bool
	served sync.WaitGroup
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func listenStream(addr string, tc *tls.Config) (*streamLayer, error) {
	adv, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &streamLayer{ln: ln, adv: adv, tls: tc, conns: map[*servedConn]struct{}{}}, nil
}

func (s *streamLayer) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	if s.tls != nil {
		c = tls.Server(c, s.tls) // the handshake runs on the first read, in the serving goroutine
	}
	sc := &servedConn{Conn: c, s: s}
	s.conns[sc] = struct{}{}
	s.served.Add(1)
	return sc, nil
}

func (s *streamLayer) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		c.Conn.Close() // the serving goroutine's read fails; it then calls servedConn.Close
	}
	return err
}

// wait returns when every accepted connection has been let go of by its
// serving goroutine.
func (s *streamLayer) wait() { s.served.Wait() }

func (s *streamLayer) Addr() net.Addr { return s.adv }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if s.tls == nil {
		return net.DialTimeout("tcp", string(address), timeout)
	}
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, err
	}
	tc := s.tls.Clone()
	tc.ServerName = host // the peer's certificate must name its raft host
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(address), tc)
}

// servedConn is an accepted connection; its Close is called once by the
// transport's serving goroutine as it returns.
type servedConn struct {
	net.Conn
	s    *streamLayer
	once sync.Once
}

func (c *servedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
		c.s.served.Done()
	})
	return err
}
