package engine

import (
	"github.com/aurumcdp/aurum/engine/access"
	"github.com/aurumcdp/aurum/engine/audit"
	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/engine/privacy"
	"github.com/aurumcdp/aurum/engine/query"
)

// The engine's error kinds are those of package base (the stages share
// them); these names keep callers of engine working.
var (
	// ErrNotFound is returned for an identifier, profile or object that
	// Aurum does not know.
	ErrNotFound = base.ErrNotFound
	// ErrBadRef is returned for a malformed profile reference.
	ErrBadRef = base.ErrBadRef
	// ErrInvalid marks a request the caller must change before retrying.
	ErrInvalid = base.ErrInvalid

	// ErrUnauthenticated is returned for a secret that is unknown, revoked
	// or expired, and for a failed login.
	ErrUnauthenticated = access.ErrUnauthenticated
	// ErrExpired is the ErrUnauthenticated of an expired token or session.
	ErrExpired = access.ErrExpired
	// ErrExists is returned when creating a user whose name is taken.
	ErrExists = access.ErrExists
	// ErrSourceExists is returned when creating a source whose name is taken.
	ErrSourceExists = access.ErrSourceExists
)

// Audit results and page size (package audit).
const (
	AuditOK              = audit.AuditOK
	AuditDenied          = audit.AuditDenied
	AuditError           = audit.AuditError
	AuditUnauthenticated = audit.AuditUnauthenticated
	AuditInvalid         = audit.AuditInvalid
	MaxAuditPage         = audit.MaxAuditPage
)

// ConsentSource is privacy.ConsentSource.
const ConsentSource = privacy.ConsentSource

// Erasure status values and types (package privacy).
const (
	ErasurePending   = privacy.ErasurePending
	ErasureApplied   = privacy.ErasureApplied
	ErasureCompleted = privacy.ErasureCompleted
)

// TOTPIssuer names Aurum in authenticator apps.
const TOTPIssuer = access.TOTPIssuer

// ParseRef splits a profile reference "type:value" (see base.ParseRef).
func ParseRef(ref string) (typ, value string, err error) { return base.ParseRef(ref) }

// Types of the read side, under their former names.
type (
	ErasureInfo   = privacy.ErasureInfo
	ErasureCounts = privacy.ErasureCounts

	AuditEntry = audit.AuditEntry
	AuditQuery = audit.AuditQuery

	TokenInfo  = access.TokenInfo
	UserInfo   = access.UserInfo
	Session    = access.Session
	SourceInfo = access.SourceInfo

	AudienceInfo  = query.AudienceInfo
	Member        = query.Member
	PreviewResult = query.PreviewResult
)

// PreviewExactLimit is query.PreviewExactLimit.
const PreviewExactLimit = query.PreviewExactLimit
