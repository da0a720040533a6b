package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/beaconhq/beacon/pki"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func init() {
	extraCommands = append(extraCommands, newTLSCmd)
}

func newTLSCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls init|cert",
		Short: "Make a CA and the certificates of the fleet's hosts",
		Long: `Make the certificates beacon's TLS needs, with no other tool:

  beacon tls init                 a CA for the fleet: ca.pem and ca-key.pem
  beacon tls cert --name N ...    a host's certificate, signed by that CA: N.pem and N-key.pem

Keys are ECDSA P-256, readable by their owner only; nothing is overwritten.
Keep ca-key.pem off the hosts: each host needs ca.pem, its own N.pem and
N-key.pem.`,
	}
	var dir, caName string
	var days int
	initCmd := &cobra.Command{
		Use:   "init [--dir DIR] [--days N] [--name NAME]",
		Short: "Make a CA: ca.pem and ca-key.pem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if days < 1 {
				return &usageError{errorf("--days %d: give 1 to %d", days, pki.MaxDays)}
			}
			if err := tlsError(pki.InitNamedCA(dir, caName, days)); err != nil {
				return err
			}
			desc := ""
			if ca, _, err := pki.LoadCA(dir); err == nil {
				desc = ": the CA " + pki.DescribeCA(ca)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s/%s and %s/%s%s\n", dir, pki.CAFile, dir, pki.CAKeyFile, desc)
			return nil
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", ".", "where the files go")
	initCmd.Flags().IntVar(&days, "days", pki.DefaultCADays, "validity in days")
	initCmd.Flags().StringVar(&caName, "name", "", `the CA's name, e.g. the fleet's (default "beacon CA" and the first 4 bytes of its key id); error messages name a CA by it and its key id`)

	o := pki.CertOptions{}
	certCmd := &cobra.Command{
		Use:   "cert --name NAME [--ip IP]... [--dns HOST]... [--client] [--dir DIR] [--days N]",
		Short: "Make a host's certificate: NAME.pem and NAME-key.pem",
		Long: `Make a certificate signed by the CA in --dir. Without --client it serves
both ways (server and client key usages), as an agent needs for its API,
HTTP, etcd client URL and peer traffic: give every address others reach the
host at, with --ip and --dns (127.0.0.1 too, for the CLI on the host). With
--client alone it is a client certificate (the CLI, an application).`,
		Example: `  beacon tls cert --name n1 --ip 10.0.0.1 --ip 127.0.0.1 --dns n1.example.com
  beacon tls cert --name ops --client`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if days < 1 {
				return &usageError{errorf("--days %d: give 1 to %d", days, pki.MaxDays)}
			}
			o.Days = days
			if err := tlsError(pki.Issue(dir, o)); err != nil {
				return err
			}
			cert, key := pki.CertFiles(dir, o.Name)
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s\n", cert, key)
			return nil
		},
	}
	f := certCmd.Flags()
	f.StringVar(&o.Name, "name", "", "the certificate's name: its files and its common name")
	f.StringArrayVar(&o.IPs, "ip", nil, "an IP address SAN (repeat for more)")
	f.StringArrayVar(&o.DNS, "dns", nil, "a DNS name SAN (repeat for more)")
	f.BoolVar(&o.ClientOnly, "client", false, "a client certificate only")
	f.StringVar(&dir, "dir", ".", "the CA's directory, where the files go")
	f.IntVar(&days, "days", pki.DefaultCertDays, "validity in days (at most the CA's)")
	cmd.AddCommand(initCmd, certCmd)
	return cmd
}

// tlsError makes bad arguments usage errors (exit 2).
func tlsError(err error) error {
	if errors.Is(err, pki.ErrInvalid) {
		return &usageError{err}
	}
	return err
}

// tlsFlags are the client commands' TLS files (DESIGN.md, Security): the
// same three as the agent's, also BEACON_CA_FILE, BEACON_CERT_FILE and
// BEACON_KEY_FILE. With them the CLI dials the agent's TCP API with
// mutual TLS; a unix: agent address stays plain.
type tlsFlags struct {
	ca, cert, key string
}

var tlsEnv = map[string]string{"ca-file": "BEACON_CA_FILE", "cert-file": "BEACON_CERT_FILE", "key-file": "BEACON_KEY_FILE"}

func (f *tlsFlags) bind(fs *pflag.FlagSet) {
	fs.StringVar(&f.ca, "ca-file", "", "TLS: the fleet's CA (env BEACON_CA_FILE); with --cert-file and --key-file the API is dialed with mutual TLS")
	fs.StringVar(&f.cert, "cert-file", "", "TLS: this client's certificate (env BEACON_CERT_FILE)")
	fs.StringVar(&f.key, "key-file", "", "TLS: this client's key (env BEACON_KEY_FILE)")
}

// export puts the flags given into the environment, where client.New
// (and the agents a benchmark starts) read them: a flag wins over the
// variable. The agent command has flags of its own by the same names.
func (f *tlsFlags) export(cmd *cobra.Command) error {
	for name, env := range tlsEnv {
		fl := cmd.Flags().Lookup(name)
		if fl == nil || !fl.Changed || cmd.LocalNonPersistentFlags().Lookup(name) != nil {
			continue
		}
		if err := os.Setenv(env, fl.Value.String()); err != nil {
			return err
		}
	}
	if cmd.LocalNonPersistentFlags().Lookup("ca-file") != nil {
		return nil // beacon agent: its own configuration checks them
	}
	if _, err := pki.FilesOf(os.Getenv(tlsEnv["ca-file"]), os.Getenv(tlsEnv["cert-file"]), os.Getenv(tlsEnv["key-file"])); err != nil {
		return &usageError{fmt.Errorf("tls: %w: --ca-file, --cert-file and --key-file (or BEACON_CA_FILE, BEACON_CERT_FILE and BEACON_KEY_FILE)", err)}
	}
	return nil
}
