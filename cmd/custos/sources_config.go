package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/custos-audit/custos/client"
	"github.com/custos-audit/custos/m365"
)

// runSourcesConfig handles the subcommands that configure sources (add,
// remove, config); handled is false for any other.
func runSourcesConfig(ctx context.Context, sub string, args []string) (handled bool, err error) {
	return sourcesConfigCmd(ctx, sub, args, osEnv())
}

func sourcesConfigCmd(ctx context.Context, sub string, args []string, env cliEnv) (bool, error) {
	switch sub {
	case "add":
		return true, sourcesAdd(ctx, args, env)
	case "remove", "config":
		about := map[string]string{
			"remove": "Removes a configured source: its collector stops and its checkpoints are deleted.\nRecords it collected stay.\n",
			"config": "Shows a configured source's configuration (never its credential).\n",
		}[sub]
		var tf tenantFlags
		fs := newFlagSet(env, "sources "+sub, "custos sources "+sub+" --tenant ID NAME", about)
		tf.register(fs)
		pos, err := parseArgs(fs, args)
		if err != nil {
			return true, err
		}
		if len(pos) != 1 {
			return true, usagef("name one source")
		}
		c, err := tf.connect(env)
		if err != nil {
			return true, err
		}
		if sub == "remove" {
			if err := c.RemoveSource(ctx, tf.tenant, pos[0]); err != nil {
				return true, explain(err)
			}
			fmt.Fprintf(env.stdout, "source %s removed from tenant %s\n", pos[0], tf.tenant)
			return true, nil
		}
		cfg, err := c.SourceConfig(ctx, tf.tenant, pos[0])
		if err != nil {
			return true, explain(err)
		}
		b, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return true, err
		}
		_, err = fmt.Fprintf(env.stdout, "%s\n", b)
		return true, err
	}
	return false, nil
}

func sourcesAdd(ctx context.Context, args []string, env cliEnv) error {
	if len(args) == 0 || args[0] != "m365" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintf(env.stderr, "usage: custos sources add m365 [flags]\n\nRun 'custos sources add m365 -h' for the flags.\n")
			return nil
		}
		return usagef("custos sources add: which kind? (m365)")
	}
	var tf tenantFlags
	fs := newFlagSet(env, "sources add m365",
		"custos sources add m365 --tenant ID --name NAME --m365-tenant GUID --client-id GUID (--client-secret-file F | --certificate F [--certificate-key F]) [flags]",
		"Configures a Microsoft 365 Management Activity API collector that runs inside the\n"+
			"server and writes into the tenant's log. The credential is sent once, sealed by\n"+
			"the server and never shown again. See docs/collection.md.\n")
	tf.register(fs)
	var (
		name       = fs.String("name", "", "the source's name, e.g. m365-prod (required)")
		entra      = fs.String("m365-tenant", "", "Entra tenant GUID (Directory ID) (required)")
		clientID   = fs.String("client-id", "", "application (client) id of the app registration (required)")
		secretFile = fs.String("client-secret-file", "", "file holding the client secret (- for stdin)")
		certFile   = fs.String("certificate", "", "PEM file with the app's certificate and its RSA private key")
		keyFile    = fs.String("certificate-key", "", "PEM file with the certificate's private key, if not in --certificate")
		cloud      = fs.String("cloud", "", "cloud preset: "+strings.Join(m365.CloudNames(), ", ")+" (default commercial)")
		apiRoot    = fs.String("api-root", "", "API root URL (overrides --cloud)")
		authority  = fs.String("authority", "", "token authority URL (overrides --cloud)")
		types      = fs.String("content-types", "", "content types, comma-separated (default: all five)")
		publisher  = fs.String("publisher", "", "PublisherIdentifier for API quota (default: --m365-tenant)")
		rateF      = fs.Float64("rate", 0, "most API requests per second (default 30)")
	)
	if err := parseNoArgs(fs, args[1:]); err != nil {
		return err
	}
	if *name == "" || *entra == "" || *clientID == "" {
		return usagef("--name, --m365-tenant and --client-id are required")
	}
	src := client.NewM365Source{TenantID: *entra, ClientID: *clientID, Cloud: *cloud, APIRoot: *apiRoot, Authority: *authority,
		ContentTypes: splitList(*types), PublisherID: *publisher, Rate: *rateF}
	switch {
	case (*certFile != "") == (*secretFile != ""):
		return usagef("give --client-secret-file or --certificate (one of them)")
	case *keyFile != "" && *certFile == "":
		return usagef("--certificate-key needs --certificate")
	case *certFile != "":
		pemData, err := os.ReadFile(*certFile)
		if err != nil {
			return fmt.Errorf("certificate: %w", err)
		}
		if *keyFile != "" {
			k, err := os.ReadFile(*keyFile)
			if err != nil {
				return fmt.Errorf("certificate key: %w", err)
			}
			pemData = append(append(pemData, '\n'), k...)
		}
		// Checked here too, so a wrong file is reported before anything
		// is sent.
		if _, err := m365.ParseCertificate(pemData); err != nil {
			return err
		}
		src.Certificate = string(pemData)
	default:
		var b []byte
		var err error
		if *secretFile == "-" {
			b, err = io.ReadAll(io.LimitReader(env.stdin, 64<<10))
		} else {
			b, err = os.ReadFile(*secretFile)
		}
		if err != nil {
			return fmt.Errorf("client secret: %w", err)
		}
		if src.ClientSecret = strings.TrimSpace(string(b)); src.ClientSecret == "" {
			return fmt.Errorf("client secret: %s is empty", *secretFile)
		}
	}
	c, err := tf.connect(env)
	if err != nil {
		return err
	}
	cfg, err := c.AddM365Source(ctx, tf.tenant, *name, src)
	if err != nil {
		return explain(err)
	}
	cred := cfg.M365.Credential
	if cfg.M365.CertificateThumbprint != "" {
		cred += " " + cfg.M365.CertificateThumbprint
	}
	fmt.Fprintf(env.stdout, "source %s added to tenant %s: Entra tenant %s, %s cloud, %s; collecting\n",
		cfg.Name, cfg.Tenant, cfg.M365.TenantID, firstNonEmpty(cfg.M365.Cloud, cfg.M365.APIRoot), cred)
	return nil
}
