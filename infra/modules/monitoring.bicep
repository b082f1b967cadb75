// Application Insights backed by a Log Analytics workspace, accepting
// telemetry only with Entra ID (local auth off). The function app's identity
// may publish to it: without "Monitoring Metrics Publisher" the host's
// telemetry, sent with APPLICATIONINSIGHTS_AUTHENTICATION_STRING, is refused
// (Learn: "Microsoft Entra authentication for Application Insights").
param name string
param location string
@description('Principal id of the identity that publishes telemetry.')
param principalId string

// Monitoring Metrics Publisher: despite the name, it publishes all telemetry.
var metricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${name}'
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${name}'
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

resource publisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: appInsights
  name: guid(appInsights.id, principalId, metricsPublisher)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', metricsPublisher)
  }
}

output appInsightsConnectionString string = appInsights.properties.ConnectionString
