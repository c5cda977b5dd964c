package api

import (
	"context"
	"io"
	"time"

	"github.com/aurumcdp/aurum/activation"
	"github.com/aurumcdp/aurum/auth"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/access"
	"github.com/aurumcdp/aurum/engine/audit"
	"github.com/aurumcdp/aurum/engine/export"
	"github.com/aurumcdp/aurum/engine/matching"
	"github.com/aurumcdp/aurum/engine/models"
	"github.com/aurumcdp/aurum/engine/privacy"
	"github.com/aurumcdp/aurum/engine/query"
	"github.com/aurumcdp/aurum/event"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/prometheus/client_golang/prometheus"
)

// The API depends on the engine through these interfaces, one per concern;
// the engine's stages satisfy them. Whoever holds the engine wires them
// (cmd/aurum's apiServices, testnode.Services for tests and benchmarks) and
// checks them at compile time.

// Ingest is the ingest edge (engine/ingest.Edge): tracking and import.
type Ingest interface {
	Ingest(ctx context.Context, source string, evs []event.Event) error
	ParseOptions() event.ParseOptions
	DeadLetter(ctx context.Context, source string, index int, field, reason string, payload []byte) error
	DeadLetters(ctx context.Context, from uint64, max int) ([]alog.DeadLetter, error)
}

// Access is who may do what (engine/access.Gate): tokens, users,
// sessions, sources and write keys.
type Access interface {
	Authenticate(secret string) (auth.Principal, error)
	CreateToken(ctx context.Context, name string, role auth.Role, expires time.Time) (string, access.TokenInfo, error)
	Tokens() []access.TokenInfo
	RevokeToken(ctx context.Context, id string) error
	CreateUser(ctx context.Context, name string, role auth.Role, password string) (string, error)
	Users() []access.UserInfo
	DeleteUser(ctx context.Context, name string) error
	Login(ctx context.Context, name, password, code string) (access.Session, error)
	SessionKey() []byte
	OpenSSOSession(ctx context.Context, name string, role auth.Role, expires time.Time) (access.Session, error)
	SourceForKey(key string) (string, bool)
	SourceExists(name string) bool
	Sources() []access.SourceInfo
	CreateSource(ctx context.Context, name string) (string, error)
	DeleteSource(ctx context.Context, name string) error
	RotateSourceKey(ctx context.Context, name string, grace time.Duration) (string, time.Time, error)
}

// Reads is the read side (engine/query.Reader).
type Reads interface {
	Profile(ref string) (*query.View, error)
	EventsPage(ref, cursor string, limit int) ([]map[string]any, string, error)
	AudienceHistory(ref, cursor string, limit int) ([]query.HistoryItem, string, error)
	Audiences() ([]query.AudienceInfo, error)
	Audience(name string) (query.AudienceInfo, error)
	AudienceMembers(name, cursor string, limit int) ([]query.Member, string, error)
	SearchMembers(name, q, cursor string, limit, scan int) (query.MemberSearch, error)
	Preview(rule string, sample int, exact bool) (query.PreviewResult, error)
	Seen(source string, messageIDs []string, at time.Time) ([]bool, error)
}

// Audiences changes audience definitions through the log (engine).
type Audiences interface {
	PutAudience(ctx context.Context, d audience.Definition) (query.AudienceInfo, error)
	DeleteAudience(ctx context.Context, name string) error
}

// Destinations manages webhook destinations (engine).
type Destinations interface {
	PutDestination(ctx context.Context, d activation.Destination) (engine.DestinationInfo, error)
	DeleteDestination(ctx context.Context, name string) error
	Destinations() ([]engine.DestinationInfo, error)
}

// Privacy is erasure, export and consent (engine/privacy.Service).
type Privacy interface {
	RequestErasure(ctx context.Context, ident string) (privacy.ErasureInfo, error)
	Erasure(id string) (privacy.ErasureInfo, error)
	Erasures() ([]privacy.ErasureInfo, error)
	Export(ref string, start func() io.Writer) error
	SetConsent(ctx context.Context, ref string, consent map[string]bool) error
}

// Replay is live rebuilds, snapshots and digests of the projections
// (engine).
type Replay interface {
	StartRebuild(opts engine.RebuildOptions) error
	RebuildStatus() engine.RebuildStatus
	CreateSnapshot() (engine.SnapshotInfo, error)
	Snapshots() ([]engine.SnapshotInfo, error)
	Digest() (engine.StateDigest, error)
}

// Models is the prediction models (engine/models.Service).
type Models interface {
	Fit(req models.Request) (models.Info, error)
	Models() ([]models.Info, error)
	Model(name string) (models.Info, error)
	Delete(ctx context.Context, name string) error
	Evaluate(name string, req models.EvaluationRequest) (models.EvaluationInfo, error)
	Suggest(ctx context.Context, req models.SuggestRequest) (models.SuggestInfo, error)
}

// Identity is probabilistic identity (engine/matching.Service): training,
// the review queue, explanations.
type Identity interface {
	Train(ctx context.Context, req matching.TrainRequest) (matching.ModelInfo, error)
	Model() (matching.ModelInfo, error)
	Reviews(limit int) ([]matching.Review, error)
	Decide(ctx context.Context, id, decision, reviewer string) (matching.Review, error)
	Explain(ref string) (matching.Explanation, error)
	Split(ctx context.Context, ref string, identifiers []string, by string) (matching.SplitInfo, error)
}

// Exports is the warehouse export (engine/export.Exporter).
type Exports interface {
	TryRun(ctx context.Context, ro export.RunOptions) (export.Manifest, error)
	Runs() ([]export.Manifest, error)
	Schedule() (export.Schedule, error)
	SetSchedule(ctx context.Context, interval time.Duration, keep int, personal bool) (export.Schedule, error)
}

// Auditor is the audit log (engine/audit.Recorder).
type Auditor interface {
	Audit(ctx context.Context, a audit.AuditEntry) error
	AuditLog(ctx context.Context, q audit.AuditQuery) ([]audit.AuditEntry, uint64, error)
	RefHash(ref string) string
}

// Node is the running node's health and position (engine).
type Node interface {
	Healthy() error
	AppliedSeq() uint64
	// CatchingUp: applied < target, the log's end when the node started
	// (a restarted node has not applied the tokens and sources created
	// meanwhile).
	CatchingUp() (applied, target uint64, catching bool)
	Sync(ctx context.Context) error
	Registry() *prometheus.Registry
	// StatsHistory is the sampling interval and the samples of the last
	// hour (or what the node keeps), oldest first.
	StatsHistory() (time.Duration, []engine.StatsSample)
}

// Services are what the API is handed; every field is required but
// Cluster (nil: a single node) and Exports (nil: the export routes answer
// 503).
type Services struct {
	Ingest       Ingest
	Access       Access
	Reads        Reads
	Audiences    Audiences
	Destinations Destinations
	Privacy      Privacy
	Replay       Replay
	Models       Models
	Identity     Identity
	Audit        Auditor
	Exports      Exports
	Node         Node
	Cluster      Cluster
}
