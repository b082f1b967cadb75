// PostgreSQL Flexible Server 16 with Entra ID authentication only (no
// passwords) and TLS (require_secure_transport is on by default; Learn
// "Server parameters - TLS"). The server accepts one control-plane
// operation at a time and answers ServerBusy to concurrent ones
// (Azure/bicep-registry-modules#4451, Altinn/dialogporten#3663), so every
// child resource waits for the previous one and loops run one at a time.
// The app identity's database role is made by scripts/deploy.sh with SQL
// (pgaadauth_create_principal_with_oid), which Bicep cannot run.
param name string
param location string
param sku object
param adminObjectId string
param adminName string
@allowed(['User', 'Group', 'ServicePrincipal'])
param adminType string
@description('Extra allowed public IPv4 ranges, as {name, start, end}.')
param firewallRules array
@description('Server connections PgBouncer keeps per database and user (General Purpose and Memory Optimized only).')
param pgbouncerPoolSize int

var databaseName = 'amplifier'
// The built-in PgBouncer does not exist on the Burstable tier (Learn
// "PgBouncer in Azure Database for PostgreSQL"); there the app connects to
// the server directly and docs/scaling.md's budget applies.
var pgbouncer = sku.tier != 'Burstable'
var pgbouncerSettings = pgbouncer ? [
  { name: 'pgbouncer.enabled', value: 'true' }
  { name: 'pgbouncer.default_pool_size', value: string(pgbouncerPoolSize) }
  // The service prepares its statements (protocol level, about 60 of them plus
  // one per filter combination of the listings: docs/scaling.md);
  // PgBouncer >= 1.21 keeps them per server connection when this is above 0.
  { name: 'pgbouncer.max_prepared_statements', value: '200' }
] : []
var configurations = concat([
  // btree_gin: the transcript search index (migrations) pairs session_id with the words.
  { name: 'azure.extensions', value: 'BTREE_GIN' }
], pgbouncerSettings)

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: name
  location: location
  sku: sku
  properties: {
    version: '16'
    storage: {
      storageSizeGB: 32
      autoGrow: 'Enabled'
    }
    backup: {
      backupRetentionDays: 7
      geoRedundantBackup: 'Disabled'
    }
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: 'Disabled'
      tenantId: subscription().tenantId
    }
    network: {
      publicNetworkAccess: 'Enabled'
    }
  }
}

// The deploying principal administers the server and runs migrations. It
// comes before the database so that it owns the database (a database made
// before any Entra administrator exists belongs to a system role).
resource admin 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2024-08-01' = {
  parent: server
  name: adminObjectId
  properties: {
    principalName: adminName
    principalType: adminType
    tenantId: subscription().tenantId
  }
}

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: server
  name: databaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
  dependsOn: [admin]
}

// Azure services (the function app has no fixed outbound address on Flex
// Consumption without a virtual network; see docs/deploy.md for VNet
// integration with a private endpoint instead).
resource allowAzure 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = {
  parent: server
  name: 'AllowAzureServices'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
  dependsOn: [database]
}

@batchSize(1)
resource extraRules 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = [for rule in firewallRules: {
  parent: server
  name: rule.name
  properties: {
    startIpAddress: rule.start
    endIpAddress: rule.end
  }
  dependsOn: [allowAzure]
}]

@batchSize(1)
resource settings 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2024-08-01' = [for setting in configurations: {
  parent: server
  name: setting.name
  properties: {
    value: setting.value
    source: 'user-override'
  }
  dependsOn: [allowAzure, extraRules]
}]

output fqdn string = server.properties.fullyQualifiedDomainName
// Migrations and administration connect here, directly.
output port int = 5432
// The service connects here: PgBouncer where the tier has it.
output appPort int = pgbouncer ? 6432 : 5432
output databaseName string = database.name
