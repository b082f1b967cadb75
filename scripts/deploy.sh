#!/usr/bin/env bash
# The deployment, every step of it: what .github/workflows/deploy.yml runs
# after `azure/login` (for the test environment, then production), and
# what the deploy rehearsal (tests/deploy.rs) runs against local stand-ins.
# Needs az, psql, python3, openssl, curl (and, unless PACKAGE is given,
# what scripts/package.sh needs; the workflow gives it the package that
# ci.yml's `package` job built).
#
#   1. build the package (scripts/package.sh) and unpack it: the migration
#      runs the very binary that is deployed
#   2. infrastructure: infra/main.bicep (recovering our own soft-deleted
#      Key Vault if the resource group was recreated)
#   3. generated secrets: admin-api-key in Key Vault, created if missing
#   4. database: the app identity's Entra role, then the migrations and the
#      app role's privileges (`migrate --grant-to`), as the deploying principal
#   5. publish the package (One Deploy) and smoke-test /api/health
#
# Environment (required): RESOURCE_GROUP, DEPLOYER_OBJECT_ID (the deploying
# principal's object id), DEPLOYER_NAME (its PostgreSQL role and the
# server's Entra administrator name: a user's user principal name (UPN),
# e.g. alice@contoso.com; a service principal's display name), JWT_ISSUER,
# JWT_AUDIENCE.
# Optional: PARAMETERS (default infra/parameters/production.parameters.json),
# DEPLOYER_TYPE (ServicePrincipal), PACKAGE (a zip already built),
# GENERATED_SECRETS (default admin-api-key; add jwt-secret-key for HS256),
# PGSSLROOTCERT (CAs psql trusts; default the system bundle), SMOKE_ATTEMPTS
# (30) and SMOKE_INTERVAL (10 s).
set -euo pipefail
cd "$(dirname "$0")/.."

: "${RESOURCE_GROUP:?}" "${DEPLOYER_OBJECT_ID:?}" "${DEPLOYER_NAME:?}" "${JWT_ISSUER:?}" "${JWT_AUDIENCE:?}"
parameters=${PARAMETERS:-infra/parameters/production.parameters.json}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
step() { echo "deploy: $*"; }
json() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }

# GitHub's OIDC token, which `az login` exchanged for Azure tokens, lives
# about five minutes and the Azure CLI cannot renew it: any token asked for
# later (a new scope, or after an hour) fails with AADSTS700024
# (Azure/login#180, Azure/azure-cli#28708). Log in again with a fresh one
# before each step that needs new tokens. Outside GitHub Actions: nothing.
refresh_login() {
  [ -n "${ACTIONS_ID_TOKEN_REQUEST_URL:-}" ] || return 0
  local token
  token=$(curl -fsS -H "Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" \
    "$ACTIONS_ID_TOKEN_REQUEST_URL&audience=api://AzureADTokenExchange" | json '["value"]')
  echo "::add-mask::$token"
  az login --service-principal --username "$AZURE_CLIENT_ID" --tenant "$AZURE_TENANT_ID" \
    --federated-token "$token" --output none
  az account set --subscription "$AZURE_SUBSCRIPTION_ID"
}

# 1. The package, exactly what is published; its binary runs the migration.
zip=${PACKAGE:-}
if [ -z "$zip" ]; then
  step "building the package"
  zip=$work/amplifier-sessions.zip
  scripts/package.sh "$zip"
fi
python3 -m zipfile -e "$zip" "$work/app"
chmod +x "$work/app/amplifier-sessions" # zip extraction by Python drops modes

# 2. Infrastructure. A Key Vault soft-deleted with this resource group keeps
# its name reserved (purge protection: for the whole retention period), so
# it is recovered instead of created.
refresh_login
step "looking for a soft-deleted Key Vault of resource group $RESOURCE_GROUP"
vault_mode=$(az keyvault list-deleted --resource-type vault --output json | RG=$RESOURCE_GROUP python3 -c '
import json, os, sys
rg = "/resourcegroups/" + os.environ["RG"].lower() + "/"
ours = [v for v in json.load(sys.stdin) if rg in v["properties"]["vaultId"].lower()]
print("recover" if ours else "default")')
deploy_infra() {
  az deployment group create --resource-group "$RESOURCE_GROUP" \
    --name "amplifier-$(date +%Y%m%d%H%M%S)" \
    --template-file infra/main.bicep --parameters "@$parameters" \
    --parameters postgresAdminObjectId="$DEPLOYER_OBJECT_ID" postgresAdminName="$DEPLOYER_NAME" \
                 postgresAdminType="${DEPLOYER_TYPE:-ServicePrincipal}" \
                 jwtIssuer="$JWT_ISSUER" jwtAudience="$JWT_AUDIENCE" keyVaultCreateMode="$vault_mode" \
    --query properties.outputs --output json > "$work/outputs.json"
}
step "deploying infra/main.bicep with $parameters (Key Vault: $vault_mode)"
# A PostgreSQL server answers ServerBusy for a while after it is created
# (Azure/azure-postgresql#134): a second attempt is normal, a third is not.
deploy_infra || { step "the deployment failed; trying once more in 60 s"; sleep 60; deploy_infra; }
output() { json "[\"$1\"][\"value\"]" < "$work/outputs.json"; }
app=$(output functionAppName)
url=$(output functionAppUrl)
vault=$(output keyVaultName)
pg_host=$(output postgresHost)
pg_port=$(output postgresPort)
pg_database=$(output postgresDatabase)
identity=$(output identityName)
identity_object_id=$(output identityPrincipalId)
# The app's URL for the workflow's smoke-test step (a step output).
if [ -n "${GITHUB_OUTPUT:-}" ]; then echo "url=$url" >> "$GITHUB_OUTPUT"; fi

# 3. Secrets the service generates for itself. An existing value is never
# replaced; "not found" is told apart from every other failure, so a
# hiccup cannot rotate the admin key. Role assignments made by the template
# take a while to apply: a denied write is retried.
refresh_login
ensure_secret() {
  local name=$1 answer attempt value_file
  if answer=$(az keyvault secret show --vault-name "$vault" --name "$name" --query id --output tsv 2>&1); then
    step "secret $name exists"
    return 0
  fi
  case $answer in
    *SecretNotFound*) ;;
    *) echo "$answer" >&2; return 1 ;;
  esac
  value_file=$(umask 077 && mktemp "$work/secret.XXXXXX")
  openssl rand -base64 48 | tr -d '\n/+=' > "$value_file"
  for attempt in $(seq 20); do
    if az keyvault secret set --vault-name "$vault" --name "$name" --file "$value_file" \
        --encoding utf-8 --output none; then
      step "secret $name created (read it with: az keyvault secret show --vault-name $vault --name $name --query value -o tsv)"
      rm -f "$value_file"
      return 0
    fi
    step "cannot write $name yet (attempt $attempt; role assignments may still be applying)"
    sleep 15
  done
  return 1
}
for secret in ${GENERATED_SECRETS:-admin-api-key}; do
  ensure_secret "$secret"
done

# 4. The database, as the deploying principal (an Entra administrator of the
# server) with its own Entra token, straight to PostgreSQL on port 5432
# (migrations hold a session-level advisory lock, which PgBouncer's
# transaction pooling would not keep). The app's managed identity gets a
# role of its own (Learn: "Manage Microsoft Entra roles"; run in database
# postgres), then exactly the privileges it needs.
refresh_login
step "creating the PostgreSQL role of $identity if it does not exist"
PGPASSWORD=$(az account get-access-token --resource-type oss-rdbms --query accessToken --output tsv) \
  psql -X -q -v ON_ERROR_STOP=1 -v role="$identity" -v oid="$identity_object_id" \
  "host=$pg_host port=$pg_port dbname=postgres user=$DEPLOYER_NAME sslmode=verify-full sslrootcert=${PGSSLROOTCERT:-/etc/ssl/certs/ca-certificates.crt}" <<'SQL'
SELECT pgaadauth_create_principal_with_oid(:'role', :'oid', 'service', false, false)
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role');
SQL
step "migrating $pg_database and granting $identity its privileges"
deployer_in_url=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$DEPLOYER_NAME")
# ENVIRONMENT=test: a one-off command that needs none of the service's
# secrets. Run from an empty directory so no .env file is read.
(cd "$work" && env ENVIRONMENT=test DATABASE_AUTH=entra AZURE_CREDENTIAL=developer-tools \
  DATABASE_URL="postgresql://$deployer_in_url@$pg_host:$pg_port/$pg_database?sslmode=require" \
  "$work/app/amplifier-sessions" migrate --grant-to "$identity")

# 5. Publish, then wait for the new code to answer. Health reads the
# schema as the app's own role, so missing privileges fail here.
refresh_login
step "publishing the package to $app"
az functionapp deploy --resource-group "$RESOURCE_GROUP" --name "$app" --src-path "$zip" --type zip
step "smoke test: $url/api/health"
for attempt in $(seq "${SMOKE_ATTEMPTS:-30}"); do
  if body=$(curl -fsS "$url/api/health" 2>&1); then
    step "healthy: $body"
    exit 0
  fi
  sleep "${SMOKE_INTERVAL:-10}"
done
echo "deploy: $url/api/health never answered 200: ${body:-}" >&2
exit 1
