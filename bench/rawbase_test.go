package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	wlg "github.com/aurumcdp/aurum/internal/workload"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The baselines of a size run (issue #15), each in a process of its own
// (TestReportEngine in mode "publish" or "consume"), interleaved with the
// measurement it is the baseline of:
//
//   - end to end against raw JetStream publish of the same workload events
//     (one message per event, with a message id, async, 8 producers, every
//     one acknowledged) into a fresh embedded server;
//   - replay against a raw ordered JetStream consumer reading the same
//     stream (AURUM_LOG of the stopped engine's data directory) from its
//     first to its last message, the messages replay reads.
//
// The workload is generated once per size into a file (writeWorkload) that
// every end-to-end round and every publish baseline read: the generator
// is slower than the engine's apply can become, and run beside the engine
// it would cap (and once did slow) the end-to-end figure.

// writeWorkload writes every event of g to path, one record per event: the
// index of its source in wlg.Sources (1 byte), the length of its JSON (4
// bytes, big-endian) and the JSON. It returns the number of events.
func writeWorkload(path string, g *wlg.Generator) (int, error) {
	src := map[string]byte{}
	for i, s := range wlg.Sources {
		src[s] = byte(i)
	}
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var hdr [5]byte
	n := 0
	for {
		ev, ok := g.Next()
		if !ok {
			break
		}
		i, ok := src[ev.Source]
		if !ok {
			f.Close()
			return n, fmt.Errorf("bench: workload: unknown source %q", ev.Source)
		}
		hdr[0] = i
		binary.BigEndian.PutUint32(hdr[1:], uint32(len(ev.JSON)))
		w.Write(hdr[:])
		w.Write(ev.JSON)
		n++
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return n, fmt.Errorf("bench: workload: %w", err)
	}
	return n, f.Close()
}

// readWorkload calls fn with each event of the file written by
// writeWorkload, in order: its source's index and its JSON, which is valid
// only during the call.
func readWorkload(path string, fn func(src int, js []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var hdr [5]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("bench: workload file: %w", err)
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if int(hdr[0]) >= len(wlg.Sources) || n > alog.ServerMaxPayload {
			return fmt.Errorf("bench: workload file: malformed record (source %d, %d bytes)", hdr[0], n)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return fmt.Errorf("bench: workload file: %w", err)
		}
		if err := fn(int(hdr[0]), buf); err != nil {
			return err
		}
	}
}

// publishFile is the end-to-end baseline: it publishes every event of the
// workload file as one JetStream message with a message id into a fresh
// embedded server on dir (Aurum's log package with its defaults, as
// BenchmarkJetStreamPublish), from concurrency producers taking chunks of
// batchSize events, each waiting for its chunk's acknowledgements. The
// clock runs from the first publish to the last acknowledgement; the
// server's start is outside it, as the engine's start is outside the end
// to end's.
func publishFile(ctx context.Context, dir, path string) (fig, error) {
	l, err := alog.Open(ctx, alog.Options{Dir: dir, Listen: "127.0.0.1:-1"})
	if err != nil {
		return fig{}, err
	}
	defer l.Close()
	type chunk struct {
		first int
		msgs  [][]byte
	}
	chunks := make(chan chunk, 2*concurrency)
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		pubErr  error
		failed  atomic.Bool
	)
	fail := func(err error) { errOnce.Do(func() { pubErr = err; failed.Store(true) }) }
	cpu0, _ := processCPU()
	start := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() { // owned: ends when chunks is closed
			defer wg.Done()
			futs := make([]*alog.Future, 0, batchSize)
			for c := range chunks {
				if failed.Load() {
					continue // drain: the reader must not block
				}
				futs = futs[:0]
				for i, m := range c.msgs {
					f, err := l.AppendAsync("aurum.log.bench", fmt.Sprintf("m-%d", c.first+i), m)
					if err != nil {
						fail(err)
						break
					}
					futs = append(futs, f)
				}
				for _, f := range futs {
					if _, _, err := f.Wait(ctx); err != nil {
						fail(err)
					}
				}
			}
		}()
	}
	n := 0
	cur := chunk{}
	err = readWorkload(path, func(_ int, js []byte) error {
		cur.msgs = append(cur.msgs, append([]byte(nil), js...))
		if n++; len(cur.msgs) == batchSize {
			chunks <- cur
			cur = chunk{first: n}
		}
		return nil
	})
	if len(cur.msgs) > 0 {
		chunks <- cur
	}
	close(chunks)
	wg.Wait()
	d := time.Since(start)
	cpu1, _ := processCPU()
	if err == nil {
		err = pubErr
	}
	if err != nil {
		return fig{}, fmt.Errorf("bench: publish: %w", err)
	}
	return fig{Events: n, Seconds: d.Seconds(), CPUns: (cpu1 - cpu0).Nanoseconds()}, nil
}

// rawConsume is the replay baseline: an ordered JetStream consumer (nats.go's,
// its defaults but for the pull buffer, which is the one the log's reader
// uses) reads the stream AURUM_LOG of the stopped engine's data directory
// dir from its first message to its last, on an embedded server of its own
// with an in-process connection, as engine.Replay reads it. The clock runs
// from the server's start (replay's time includes its own start) to the
// last message. It returns the messages read (in fig.Events) and their bytes.
func rawConsume(ctx context.Context, dir string) (fig, int64, error) {
	cpu0, _ := processCPU()
	start := time.Now()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(dir, "jetstream"),
		MaxPayload: alog.ServerMaxPayload, NoSigs: true, NoLog: true, DisableJetStreamBanner: true,
	})
	if err != nil {
		return fig{}, 0, fmt.Errorf("bench: consume: %w", err)
	}
	srv.Start()
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	if !srv.ReadyForConnections(30 * time.Second) {
		return fig{}, 0, errors.New("bench: consume: server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.InProcessServer(srv))
	if err != nil {
		return fig{}, 0, fmt.Errorf("bench: consume: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fig{}, 0, err
	}
	// The stream's state takes a moment to be there after a restart.
	var st jetstream.Stream
	for deadline := time.Now().Add(30 * time.Second); ; {
		if st, err = js.Stream(ctx, alog.StreamLog); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fig{}, 0, fmt.Errorf("bench: consume: stream %s: %w", alog.StreamLog, err)
	}
	state := st.CachedInfo().State
	if state.Msgs == 0 {
		return fig{}, 0, fmt.Errorf("bench: consume: %s is empty", alog.StreamLog)
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fig{}, 0, fmt.Errorf("bench: consume: %w", err)
	}
	it, err := c.Messages(jetstream.PullMaxMessagesWithBytesLimit(1024, alog.ServerMaxPayload))
	if err != nil {
		return fig{}, 0, fmt.Errorf("bench: consume: %w", err)
	}
	defer it.Stop()
	var msgs int
	var bytes int64
	for {
		m, err := it.Next(jetstream.NextMaxWait(30 * time.Second))
		if err != nil {
			return fig{}, 0, fmt.Errorf("bench: consume: after %d of %d messages: %w", msgs, state.Msgs, err)
		}
		msgs++
		bytes += int64(len(m.Data()))
		md, err := m.Metadata()
		if err != nil {
			return fig{}, 0, err
		}
		if md.Sequence.Stream >= state.LastSeq {
			break
		}
	}
	d := time.Since(start)
	cpu1, _ := processCPU()
	return fig{Events: msgs, Seconds: d.Seconds(), CPUns: (cpu1 - cpu0).Nanoseconds()}, bytes, nil
}
