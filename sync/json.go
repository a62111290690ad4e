package usersync

import (
	"bytes"
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
		if err := encodeImportDocument(w, doc); err != nil {
			return fmt.Errorf("encode import document: %w", err)
		}
		return nil
	})
}

// encodeImportDocument writes doc as json.Encoder with SetIndent("", "  ")
// does, byte for byte, but one plan item and one user at a time: the Encoder
// builds the whole document in memory and then a second, indented copy, which
// for 100,000 users was 220 MB at the sync's peak. The rest of the document is
// encoded with the lists empty, and each list's "[]" is replaced by its
// elements. A list is found by its key at the start of a line, with the
// indentation of its depth (two levels): a string value cannot hold a raw
// newline, so nothing else matches.
func encodeImportDocument(w io.Writer, doc importDocument) error {
	plan := *doc.Plan
	state := doc.State
	lists := []struct {
		key   string
		items int
		elem  func(i int) any
	}{
		{"creates", len(plan.Creates), func(i int) any { return &plan.Creates[i] }},
		{"updates", len(plan.Updates), func(i int) any { return &plan.Updates[i] }},
		{"disables", len(plan.Disables), func(i int) any { return &plan.Disables[i] }},
		{"removes", len(plan.Removes), func(i int) any { return &plan.Removes[i] }},
		{"kept", len(plan.Kept), func(i int) any { return &plan.Kept[i] }},
		{"unchanged", len(plan.Unchanged), func(i int) any { return &plan.Unchanged[i] }},
		{"users", len(state.Users), func(i int) any { return &state.Users[i] }},
	}
	// Nil lists encode as null: keep them so.
	empty := func(l []PlanItem) []PlanItem {
		if l == nil {
			return nil
		}
		return []PlanItem{}
	}
	shell := plan
	shell.Creates, shell.Updates, shell.Disables = empty(plan.Creates), empty(plan.Updates), empty(plan.Disables)
	shell.Removes, shell.Kept, shell.Unchanged = empty(plan.Removes), empty(plan.Kept), empty(plan.Unchanged)
	doc.Plan = &shell
	if state.Users != nil {
		doc.State.Users = []ImportUser{}
	}
	rest, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	const indent = "    " // every list is a field of "plan" or "state"
	for _, l := range lists {
		if l.items == 0 {
			continue
		}
		marker := "\n" + indent + `"` + l.key + `": []`
		at := bytes.Index(rest, []byte(marker))
		if at < 0 {
			return fmt.Errorf("the document has no list %q", l.key)
		}
		at += len(marker) - len("]")
		if _, err := w.Write(rest[:at]); err != nil {
			return err
		}
		rest = rest[at:]
		inner := indent + "  "
		for i := range l.items {
			raw, err := json.MarshalIndent(l.elem(i), inner, "  ")
			if err != nil {
				return err
			}
			sep := ",\n"
			if i == 0 {
				sep = "\n"
			}
			if _, err := io.WriteString(w, sep+inner); err != nil {
				return err
			}
			if _, err := w.Write(raw); err != nil {
				return err
			}
		}
		if _, err := io.WriteString(w, "\n"+indent); err != nil {
			return err
		}
	}
	if _, err := w.Write(rest); err != nil {
		return err
	}
	_, err = io.WriteString(w, "\n")
	return err
}
