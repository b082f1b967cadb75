// PostgreSQL Flexible Server 16 with Entra ID authentication only (no
// passwords), TLS required, and the app's identity as a database principal.
param name string
param location string
param sku object
param adminObjectId string
param adminName string
@allowed(['User', 'Group', 'ServicePrincipal'])
param adminType string
param appIdentityPrincipalId string
param appIdentityName string
@description('Extra allowed public IPv4 ranges, as {name, start, end}.')
param firewallRules array

var databaseName = 'amplifier'

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

// TLS for every connection (the service uses sslmode=require and verifies
// the certificate against the system roots).
resource requireTls 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2024-08-01' = {
  parent: server
  name: 'require_secure_transport'
  properties: {
    value: 'on'
    source: 'user-override'
  }
}

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: server
  name: databaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
}

// The deploying principal administers the server and runs migrations.
resource admin 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2024-08-01' = {
  parent: server
  name: adminObjectId
  properties: {
    principalName: adminName
    principalType: adminType
    tenantId: subscription().tenantId
  }
  dependsOn: [requireTls]
}

// The function app's identity logs in as itself. Registered as an Entra
// administrator because Bicep cannot run SQL; docs/deploy.md shows how to
// narrow it to a plain role with pgaadauth_create_principal instead.
resource appPrincipal 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2024-08-01' = {
  parent: server
  name: appIdentityPrincipalId
  properties: {
    principalName: appIdentityName
    principalType: 'ServicePrincipal'
    tenantId: subscription().tenantId
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
}

resource extraRules 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = [for rule in firewallRules: {
  parent: server
  name: rule.name
  properties: {
    startIpAddress: rule.start
    endIpAddress: rule.end
  }
}]

output fqdn string = server.properties.fullyQualifiedDomainName
output databaseName string = database.name
