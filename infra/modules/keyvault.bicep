// Key Vault in RBAC mode: the app's identity may read secrets; the deploying
// principal may write them (scripts/deploy.sh creates the generated ones on
// the first deployment). No secret value is ever in a template.
param name string
param location string
@description('Principal id of the app identity (reads secrets).')
param principalId string
@description('Object id and type of the deploying principal (writes generated secrets).')
param deployerObjectId string
@allowed(['User', 'Group', 'ServicePrincipal'])
param deployerType string
@description('recover: bring back this vault after its resource group was deleted and recreated (soft delete keeps the name reserved; scripts/deploy.sh decides).')
@allowed(['default', 'recover'])
param createMode string

// Key Vault Secrets User / Key Vault Secrets Officer
var secretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var secretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    createMode: createMode
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 30
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
  }
}

// Role assignments are deleted with a vault and not restored by recovery;
// these recreate them on every deployment.
resource identitySecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: vault
  name: guid(vault.id, principalId, secretsUser)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsUser)
  }
}

resource deployerSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: vault
  name: guid(vault.id, deployerObjectId, secretsOfficer)
  properties: {
    principalId: deployerObjectId
    principalType: deployerType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsOfficer)
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
