package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/aurumcdp/aurum/engine/access"
	"github.com/spf13/cobra"
)

const rolesHelp = `Roles: admin (everything), editor (sources, audiences, destinations), viewer (read-only:
profiles, audiences, metrics), privacy (profile reads; erasure, export and consent).
docs/security.md has the table of routes and roles.`

func newTokenCmd() *cobra.Command {
	var server, token string
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage API tokens (bearer tokens with a role)",
		Long: `Manage API tokens: bearer tokens with a role for scripts and services. A token's secret
is shown once, when it is created; the node keeps only its SHA-256. Tokens can expire and
be revoked. Managing tokens needs an admin token.

` + rolesHelp,
		Example: `  aurum token add --name ci --role editor --expires 720h
  aurum token list
  aurum token revoke 01JABCDEF...`,
	}
	addClientFlags(cmd, &server, &token)
	var name, role, expires string
	add := &cobra.Command{
		Use:   "add --name NAME --role ROLE [--expires WHEN]",
		Short: "Create a token and print it (its secret is shown only now)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient(server, token)
			if err != nil {
				return err
			}
			body, _ := json.Marshal(map[string]string{"name": name, "role": role, "expires": expires})
			var out map[string]any
			if err := c.do(cmd.Context(), http.MethodPost, "/v1/tokens", body, &out); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), out)
		},
	}
	add.Flags().StringVar(&name, "name", "", "token name (what it is for)")
	add.Flags().StringVar(&role, "role", "", "admin, editor, viewer or privacy")
	add.Flags().StringVar(&expires, "expires", "", `expiry: a duration ("720h"), days ("30d") or an RFC 3339 time; default never`)
	_ = add.MarkFlagRequired("name")
	_ = add.MarkFlagRequired("role")
	cmd.AddCommand(add, newListCmd("list", "List tokens (never their secrets)", cobra.NoArgs, &server, &token,
		func([]string) string { return "/v1/tokens" },
		func(raw []byte) ([]string, [][]string, error) {
			var out struct {
				Tokens []access.TokenInfo `json:"tokens"`
			}
			err := json.Unmarshal(raw, &out)
			rows := make([][]string, len(out.Tokens))
			for i, t := range out.Tokens {
				rows[i] = []string{t.ID, t.Name, string(t.Role), rfc3339(t.Created), rfc3339(t.Expires)}
			}
			return []string{"ID", "NAME", "ROLE", "CREATED", "EXPIRES"}, rows, err
		}), newDeleteCmd("revoke ID", "Revoke a token; it stops working at once", &server, &token, "tokens", "revoked"))
	return cmd
}

func newUserCmd() *cobra.Command {
	var server, token string
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage people who log in (password + TOTP)",
		Long: `Manage people who log in (POST /v1/login, for the web UI) with a password (argon2id) and
a TOTP second factor (RFC 6238). "user add" prints the otpauth:// URI to enrol in an
authenticator app, once. The password is read from --password-file or from the first line of
standard input, never from a flag (flags end up in shell history and process lists). It
must have at least 12 characters. Managing users needs an admin token.

` + rolesHelp,
		Example: `  aurum user add --name ada --role viewer --password-file ada.pw
  printf '%s\n' "$PASSWORD" | aurum user add --name ada --role viewer
  aurum user list
  aurum user rm ada`,
	}
	addClientFlags(cmd, &server, &token)
	var name, role, pwFile string
	add := &cobra.Command{
		Use:   "add --name NAME --role ROLE [--password-file FILE]",
		Short: "Create a user and print the otpauth:// URI to enrol the second factor",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, err := readPassword(cmd.InOrStdin(), pwFile)
			if err != nil {
				return err
			}
			c, err := newClient(server, token)
			if err != nil {
				return err
			}
			body, _ := json.Marshal(map[string]string{"name": name, "role": role, "password": pw})
			var out map[string]any
			if err := c.do(cmd.Context(), http.MethodPost, "/v1/users", body, &out); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), out)
		},
	}
	add.Flags().StringVar(&name, "name", "", "user name (the login)")
	add.Flags().StringVar(&role, "role", "", "admin, editor, viewer or privacy")
	add.Flags().StringVar(&pwFile, "password-file", "", "file whose first line is the password (default: standard input)")
	_ = add.MarkFlagRequired("name")
	_ = add.MarkFlagRequired("role")
	cmd.AddCommand(add, newListCmd("list", "List users", cobra.NoArgs, &server, &token,
		func([]string) string { return "/v1/users" },
		func(raw []byte) ([]string, [][]string, error) {
			var out struct {
				Users []access.UserInfo `json:"users"`
			}
			err := json.Unmarshal(raw, &out)
			rows := make([][]string, len(out.Users))
			for i, u := range out.Users {
				rows[i] = []string{u.Name, string(u.Role), rfc3339(u.Created)}
			}
			return []string{"NAME", "ROLE", "CREATED"}, rows, err
		}), newDeleteCmd("rm NAME", "Delete a user and end their sessions", &server, &token, "users", "deleted"))
	return cmd
}

// readPassword reads the first line of file, or of stdin when file is "".
func readPassword(stdin io.Reader, file string) (string, error) {
	return readSecret(stdin, file, "--password-file", "password")
}

// readSecret reads the first line of file (given by flag), or of stdin
// when file is "": secrets never come from flags (shell history, process
// lists).
func readSecret(stdin io.Reader, file, flag, what string) (string, error) {
	src := stdin
	from := "standard input"
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", flag, err)
		}
		defer f.Close()
		src, from = f, file
	}
	line, err := bufio.NewReader(io.LimitReader(src, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("%s: read %s: %w", what, from, err)
	}
	v := strings.TrimRight(line, "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s: %s is empty (give it on the first line)", what, from)
	}
	return v, nil
}
