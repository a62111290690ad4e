package usersync

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// The JSON sink: import.json_file holds the last applied plan, what Apply did
// with it, and the applied import, for tools and for the admin. It is a report,
// written atomically on each Apply that changes the import; the importer's own
// record is applied.json. Every object is a struct, so the field order is
// fixed.

// importDocumentVersion is the format version of the JSON file.
const importDocumentVersion = 1

// importDocument is the JSON file's content.
type importDocument struct {
	// Version is importDocumentVersion.
	Version int `json:"version"`
	// Plan is the plan Apply was given; Options how it was applied; Result
	// what Apply did (webhook deliveries excepted: they happen after the file
	// is written, see state.pending_webhook_batches and the log).
	Plan    *Plan        `json:"plan"`
	Options ApplyOptions `json:"options"`
	Result  ApplyResult  `json:"result"`
	// State is the applied import.
	State importDocumentState `json:"state"`
}

// importDocumentState is the applied import as the JSON file shows it.
type importDocumentState struct {
	Sequence     uint64    `json:"sequence"`
	AppliedAt    time.Time `json:"applied_at"`
	Mode         string    `json:"mode"`
	CSVSHA256    string    `json:"csv_sha256"`
	CSVChangedAt time.Time `json:"csv_changed_at"`
	// PendingWebhookBatches are the idempotency keys of the batches not yet
	// delivered when the file was written, oldest first.
	PendingWebhookBatches []string     `json:"pending_webhook_batches"`
	Users                 []ImportUser `json:"users"`
}

// writeImportDocument writes the JSON file at path, atomically.
func writeImportDocument(path string, p *Plan, o ApplyOptions, res ApplyResult, st *appliedState) error {
	doc := importDocument{
		Version: importDocumentVersion,
		Plan:    p,
		Options: o,
		Result:  res,
		State: importDocumentState{
			Sequence: st.Sequence, AppliedAt: st.AppliedAt, Mode: st.Mode,
			CSVSHA256: st.CSVSHA256, CSVChangedAt: st.CSVChangedAt,
			PendingWebhookBatches: make([]string, 0, len(st.Pending)),
			Users:                 st.Users,
		},
	}
	for _, b := range st.Pending {
		doc.State.PendingWebhookBatches = append(doc.State.PendingWebhookBatches, b.Key)
	}
	return writeFileAtomic(path, outputFileMode, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return fmt.Errorf("encode import document: %w", err)
		}
		return nil
	})
}
