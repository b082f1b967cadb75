// The Amplifier sessions API on Azure: a Flex Consumption function app (custom
// handler) with a user-assigned managed identity, Key Vault (RBAC) for its
// secrets, PostgreSQL Flexible Server with Entra ID authentication and TLS,
// and Application Insights. No secret values live here: the identity logs in
// to PostgreSQL with Entra tokens, and the secrets the service generates
// (admin-api-key) are created in Key Vault by scripts/deploy.sh.
targetScope = 'resourceGroup'

@description('Short name used in every resource name, e.g. amplifier.')
@minLength(3)
@maxLength(12)
param appName string = 'amplifier'

@description('test or production; also the ENVIRONMENT of the service.')
@allowed(['test', 'production'])
param environmentName string

param location string = resourceGroup().location

@description('Object id of the Entra principal (user, group or the CI service principal) that deploys: administers PostgreSQL, runs migrations, writes generated secrets.')
param postgresAdminObjectId string

@description('Display name of that principal (its login name in PostgreSQL).')
param postgresAdminName string

@allowed(['User', 'Group', 'ServicePrincipal'])
param postgresAdminType string = 'ServicePrincipal'

@description('Entra ID issuer of user tokens, e.g. https://login.microsoftonline.com/<tenant>/v2.0.')
param jwtIssuer string

@description('Audience of user tokens: the API app registration\'s client id (a GUID), which is the aud of v2.0 access tokens (docs/deploy.md).')
param jwtAudience string

@description('Browser origins allowed to call the API, e.g. https://app.example.com.')
param allowedOrigins array = []

@description('PostgreSQL compute tier and SKU.')
param postgresSku object = {
  name: 'Standard_B2s'
  tier: 'Burstable'
}

@description('Public IPv4 ranges allowed to reach PostgreSQL besides Azure services (e.g. an office), as {name, start, end}.')
param postgresFirewallRules array = []

@description('Largest number of instances the function app scales out to (Flex Consumption: at least 40); with the pool size (and one listening connection per instance) it bounds PostgreSQL connections (docs/scaling.md).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Connections per instance (DATABASE_POOL_MAX_SIZE).')
param poolMaxSize int = 5

@description('Server connections the built-in PgBouncer opens for the app (General Purpose and Memory Optimized tiers).')
param pgbouncerPoolSize int = 50

@description('MAX_SESSION_AGE_DAYS: sessions inactive this long are purged (0: kept forever; applications may override it).')
@minValue(0)
@maxValue(36500)
param maxSessionAgeDays int = 0

@description('TRASH_RETENTION_DAYS: how long a deleted session stays restorable in the trash before the purge removes it.')
@minValue(0)
@maxValue(36500)
param trashRetentionDays int = 30

@description('AUDIT_RETENTION_DAYS: how long audit events are kept.')
@minValue(0)
@maxValue(36500)
param auditRetentionDays int = 365

@description('PURGE_SCHEDULE: when the purge-expired timer runs, NCRONTAB with seconds, UTC.')
param purgeSchedule string = '0 0 3 * * *'

@description('recover when a soft-deleted vault of this resource group exists (scripts/deploy.sh finds out).')
@allowed(['default', 'recover'])
param keyVaultCreateMode string = 'default'

var suffix = uniqueString(resourceGroup().id, appName, environmentName)
var baseName = '${appName}-${environmentName}'

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    name: 'id-${baseName}'
    location: location
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    name: baseName
    location: location
    principalId: identity.outputs.principalId
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: take('st${replace(appName, '-', '')}${suffix}', 24)
    location: location
    principalId: identity.outputs.principalId
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: take('kv-${appName}-${suffix}', 24)
    location: location
    principalId: identity.outputs.principalId
    deployerObjectId: postgresAdminObjectId
    deployerType: postgresAdminType
    createMode: keyVaultCreateMode
  }
}

module postgres 'modules/postgres.bicep' = {
  name: 'postgres'
  params: {
    name: 'psql-${baseName}-${suffix}'
    location: location
    sku: postgresSku
    adminObjectId: postgresAdminObjectId
    adminName: postgresAdminName
    adminType: postgresAdminType
    firewallRules: postgresFirewallRules
    pgbouncerPoolSize: pgbouncerPoolSize
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    name: 'func-${baseName}-${suffix}'
    location: location
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    maximumInstanceCount: maximumInstanceCount
    allowedOrigins: allowedOrigins
    appSettings: {
      ENVIRONMENT: environmentName == 'production' ? 'production' : 'staging'
      AZURE_KEYVAULT_NAME: keyVault.outputs.name
      AZURE_CLIENT_ID: identity.outputs.clientId
      DATABASE_AUTH: 'entra'
      // No password: the identity logs in with Entra tokens, through
      // PgBouncer where the server has it.
      DATABASE_URL: 'postgresql://${identity.outputs.name}@${postgres.outputs.fqdn}:${postgres.outputs.appPort}/${postgres.outputs.databaseName}?sslmode=require'
      // Live sessions: each instance's one listening connection (LISTEN
      // needs a session, which PgBouncer's transaction pooling does not
      // keep) goes to the server directly (docs/scaling.md).
      DATABASE_LISTEN_PORT: string(postgres.outputs.port)
      DATABASE_POOL_MAX_SIZE: string(poolMaxSize)
      MIGRATE_ON_START: 'false'
      // OpenSSL reads the three roots Azure Database for PostgreSQL
      // documents, shipped in the package (certs/, mounted at
      // /home/site/wwwroot), instead of the whole system bundle, so the
      // first connection does not wait for ~145 roots to be parsed
      // (README, Design notes, "Cold start"). Other roots are still found
      // in the system's hashed directory.
      SSL_CERT_FILE: '/home/site/wwwroot/certs/azure-postgres-roots.crt'
      AUTH_REQUIRED: 'true'
      JWT_ALGORITHM: 'RS256'
      JWT_ISSUER: jwtIssuer
      JWT_AUDIENCE: jwtAudience
      JWT_USER_CLAIM: 'oid'
      LOG_LEVEL: 'info'
      // Retention: the purge-expired timer function reads its schedule
      // from PURGE_SCHEDULE (%PURGE_SCHEDULE% in its function.json); the
      // host runs it on one instance at a time with a blob lease in
      // AzureWebJobsStorage (the identity's Storage Blob Data Owner role,
      // modules/storage.bicep).
      MAX_SESSION_AGE_DAYS: string(maxSessionAgeDays)
      TRASH_RETENTION_DAYS: string(trashRetentionDays)
      AUDIT_RETENTION_DAYS: string(auditRetentionDays)
      PURGE_SCHEDULE: purgeSchedule
    }
  }
}

output functionAppName string = functionApp.outputs.name
output functionAppUrl string = functionApp.outputs.url
output keyVaultName string = keyVault.outputs.name
output postgresHost string = postgres.outputs.fqdn
output postgresPort int = postgres.outputs.port
output postgresDatabase string = postgres.outputs.databaseName
output identityClientId string = identity.outputs.clientId
output identityName string = identity.outputs.name
output identityPrincipalId string = identity.outputs.principalId
