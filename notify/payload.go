package notify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/custos-audit/custos/alert"
)

// Message is the body of a json channel's notification.
type Message struct {
	Event  string      `json:"event"` // alert.opened or alert.test
	SentAt time.Time   `json:"sentAt"`
	Alert  alert.Alert `json:"alert"`
}

// payload renders a in format.
func payload(format, event string, a alert.Alert) ([]byte, error) {
	var v any
	switch format {
	case FormatJSON:
		v = Message{Event: event, SentAt: time.Now().UTC(), Alert: a}
	case FormatTeams:
		v = teamsCard(a)
	case FormatSlack:
		v = slackMessage(a)
	default:
		return nil, fmt.Errorf("%w: format %q", ErrInvalid, format)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// summary lines shared by the chat formats.
func headline(a alert.Alert) string {
	return fmt.Sprintf("[%s] %s: %s", strings.ToUpper(a.Severity), a.Title, a.Entity)
}

func facts(a alert.Alert) [][2]string {
	f := [][2]string{
		{"Tenant", a.Tenant},
		{"Detector", a.Detector},
		{"Severity", a.Severity},
		{"Entity", a.Entity},
		{"Records", fmt.Sprint(a.Count)},
		{"First seen", a.FirstSeen.UTC().Format(time.RFC3339)},
		{"Last seen", a.LastSeen.UTC().Format(time.RFC3339)},
		{"Alert id", a.ID},
	}
	if len(a.Related) > 0 {
		f = append(f, [2]string{"Related", strings.Join(a.Related, ", ")})
	}
	return f
}

// teamsCard is an Adaptive Card in the message envelope that Teams
// Workflows' "when a webhook request is received" trigger posts.
func teamsCard(a alert.Alert) any {
	type fact struct {
		Title string `json:"title"`
		Value string `json:"value"`
	}
	var fs []fact
	for _, f := range facts(a) {
		fs = append(fs, fact{f[0], teamsEscape(f[1])})
	}
	color := "Warning"
	if a.Severity == "high" || a.Severity == "critical" {
		color = "Attention"
	}
	card := map[string]any{
		"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
		"type":    "AdaptiveCard",
		"version": "1.4",
		"body": []any{
			map[string]any{"type": "TextBlock", "text": teamsEscape(headline(a)), "weight": "Bolder", "size": "Medium", "color": color, "wrap": true},
			map[string]any{"type": "TextBlock", "text": teamsEscape(a.Explanation), "wrap": true},
			map[string]any{"type": "FactSet", "facts": fs},
		},
	}
	return map[string]any{
		"type": "message",
		"attachments": []any{map[string]any{
			"contentType": "application/vnd.microsoft.card.adaptive",
			"content":     card,
		}},
	}
}

// slackMessage is an incoming-webhook message: text for notifications
// and clients without blocks, blocks for the rest.
func slackMessage(a alert.Alert) any {
	var b strings.Builder
	for _, f := range facts(a) {
		fmt.Fprintf(&b, "*%s:* %s\n", f[0], slackEscape(f[1]))
	}
	return map[string]any{
		"text": slackEscape(headline(a)),
		"blocks": []any{
			map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": "*" + slackEscape(headline(a)) + "*\n" + slackEscape(a.Explanation)}},
			map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": strings.TrimSuffix(b.String(), "\n")}},
		},
	}
}

// Alert text carries attacker-chosen strings (user ids, app names, inbox
// rule names): escaped so they cannot become links, mentions or markup.
var (
	slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
	teamsEscaper = strings.NewReplacer(`\`, `\\`, "[", `\[`, "]", `\]`, "(", `\(`, ")", `\)`, "*", `\*`, "_", `\_`, "`", "\\`", "<", "&lt;", ">", "&gt;", "#", `\#`)
)

func slackEscape(s string) string { return slackEscaper.Replace(s) }
func teamsEscape(s string) string { return teamsEscaper.Replace(s) }
